/** A request as callers hand it to the host, and the request header map Envoy would build from it. */
import { randomUUID } from 'node:crypto';
import type { Pair } from './pairs.ts';
import type { PropertyValue } from './values.ts';

export interface FilterRequest {
  method: string;
  /** Path with query, exactly as received. */
  path: string;
  authority: string;
  scheme?: string;
  /** Names are lowercased; pseudo-headers are not allowed here. */
  headers?: Record<string, string | string[]> | Pair[];
  body?: string | Uint8Array;
  /** `principal`: the peer certificate's URI SAN (mTLS); omitted: no client certificate. */
  source?: { principal?: string; address?: string };
  destination?: { address?: string };
  /** Dynamic metadata by filter name, e.g. `{ 'envoy.filters.http.jwt_authn': { user: claims } }`. */
  metadata?: Record<string, Record<string, unknown>>;
  /** Overrides of Envoy attributes by `top` or `top.key`, e.g. `{ 'connection.requested_server_name': 'svc' }`. Integers as bigint. */
  properties?: Record<string, PropertyValue>;
}

/** The pseudo-headers first, then the given headers lowercased; `x-request-id` generated when absent. */
export function requestHeaders(request: FilterRequest): Pair[] {
  const headers: Pair[] = [
    [':authority', request.authority],
    [':path', request.path],
    [':method', request.method],
    [':scheme', request.scheme ?? 'https'],
  ];
  let hasRequestId = false;
  const given = request.headers;
  if (Array.isArray(given)) for (const [k, v] of given) hasRequestId = addRequestHeader(headers, k, v) || hasRequestId;
  else if (given) {
    for (const name in given) {
      if (!Object.hasOwn(given, name)) continue;
      const value = given[name];
      if (Array.isArray(value)) for (const v of value) hasRequestId = addRequestHeader(headers, name, v) || hasRequestId;
      else hasRequestId = addRequestHeader(headers, name, value) || hasRequestId;
    }
  }
  // Envoy's connection manager generates x-request-id when the request has none.
  if (!hasRequestId) headers.push(['x-request-id', randomUUID()]);
  return headers;
}

/** Adds one request header; true when it is x-request-id. */
function addRequestHeader(headers: Pair[], rawName: string, value: string): boolean {
  const name = rawName.toLowerCase();
  if (name.startsWith(':')) throw new TypeError(`request header ${name}: pseudo-headers come from method, path, authority and scheme`);
  if (name !== 'host') headers.push([name, value]); // HTTP/1 Host becomes :authority
  return name === 'x-request-id';
}

/** The request's content-type as given (first of repeats), whatever the header's case. */
export function contentTypeOf(request: FilterRequest): string | undefined {
  const given = request.headers;
  if (!given) return undefined;
  const pairs = Array.isArray(given) ? given : Object.entries(given);
  for (const [name, value] of pairs) if (name.toLowerCase() === 'content-type') return Array.isArray(value) ? value[0] : value;
  return undefined;
}
