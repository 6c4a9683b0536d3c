/**
 * The fingerprint claims Envoy's jwt_authn would store in dynamic metadata
 * (`payload_in_metadata: fingerprint`) after verifying a caller's fingerprint, for runs of a
 * policy filter without a real signer: `palisade test`, benchmarks, tests. The claims are
 * what spiffe/fingerprint.ts signs; the filter checks them (filters/policy/fingerprint.ts).
 */
import { randomBytes } from 'node:crypto';
import type { FilterRequest } from '../host/filter.ts';
import { FINGERPRINT_TTL_SECONDS } from '../spiffe/fingerprint-limits.ts';

export const JWT_AUTHN = 'envoy.filters.http.jwt_authn';

export interface FingerprintFor {
  /** The caller's SPIFFE ID (`iss` and `sub`). */
  caller: string;
  /** The called service's SPIFFE ID (`aud`). */
  service: string;
  method: string;
  /** The request path as sent; `htu` drops the query. */
  path: string;
  /** Seconds since the epoch (default: now). */
  now?: number;
  jti?: string;
}

export function fingerprintClaims(f: FingerprintFor): Record<string, unknown> {
  const iat = Math.floor(f.now ?? Date.now() / 1000);
  const q = f.path.indexOf('?');
  return {
    iss: f.caller,
    sub: f.caller,
    aud: f.service,
    htm: f.method,
    htu: q < 0 ? f.path : f.path.slice(0, q),
    iat,
    exp: iat + FINGERPRINT_TTL_SECONDS,
    jti: f.jti ?? freshJti(),
  };
}

// A jti is 16 random bytes; they are cut from a pool filled 4 KiB at a time, since diff and
// its property tests make claims for hundreds of thousands of requests and a getrandom call
// each was a sixth of their CPU.
let pool = Buffer.alloc(0);
let used = 0;
function freshJti(): string {
  if (used + 16 > pool.length) [pool, used] = [randomBytes(4096), 0];
  return pool.subarray(used, (used += 16)).toString('base64url');
}

/**
 * `request` with a verified fingerprint for its own caller, method and path in its jwt_authn
 * metadata (next to any `user`). Without a caller (no client certificate) it is unchanged.
 */
export function withFingerprint(request: FilterRequest, service: string): FilterRequest {
  const caller = request.source?.principal;
  if (!caller) return request;
  const fingerprint = fingerprintClaims({ caller, service, method: request.method, path: request.path });
  return withJwtAuthn(request, { fingerprint });
}

/** `request` with members added to its jwt_authn metadata (a new object; the request is not changed). */
export function withJwtAuthn(request: FilterRequest, members: Record<string, unknown>): FilterRequest {
  const metadata = request.metadata ?? {};
  return { ...request, metadata: { ...metadata, [JWT_AUTHN]: { ...metadata[JWT_AUTHN], ...members } } };
}
