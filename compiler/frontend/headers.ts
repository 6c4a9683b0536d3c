/** HTTP header names in policies: keys read from `request.headers`, names set by `inject`. */

/** RFC 9110 token characters. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Headers that belong to the connection or the framing, never to an application (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authenticate', 'proxy-authorization',
]);
/** Headers that change how the request is routed or framed. */
const ROUTING = new Set(['host', 'content-length']);
const RESERVED_PREFIX = 'x-palisade-';

/** Why `key` cannot be looked up in `request.headers`, or null. */
export function headerKeyError(key: string): string | null {
  if (key.startsWith(':')) return `pseudo-header '${key}' cannot be read; use request.method, request.path or request.host`;
  if (!TOKEN.test(key)) return `${JSON.stringify(key)} is not a valid header name`;
  return null;
}

/** Why a rule may not inject header `name` (already lowercased), or null. */
export function injectHeaderError(name: string): string | null {
  if (name.startsWith(':')) return `cannot inject pseudo-header '${name}'`;
  if (!TOKEN.test(name)) return `${JSON.stringify(name)} is not a valid header name`;
  if (HOP_BY_HOP.has(name)) return `cannot inject hop-by-hop header '${name}'`;
  if (ROUTING.has(name)) return `cannot inject '${name}': it controls routing or framing`;
  if (name.startsWith(RESERVED_PREFIX)) return `header names starting with '${RESERVED_PREFIX}' are reserved for Palisade`;
  return null;
}
