/**
 * Authenticates the bearer token of a request at the edge: a JWT access token (RFC 9068)
 * verified against the provider's JWKS, or an opaque token through introspection (RFC 7662).
 *
 * The JWKS comes from discovery only: a token's `jku`, `x5u`, `x5c` or embedded `jwk` header
 * is never followed or used (jose's remote key set looks keys up by `kid` and `alg` in the
 * provider's set, re-fetching it on an unknown `kid` at most once per cooldown). Algorithms
 * are asymmetric only, so `none` and HMAC keyed with a public key never verify.
 */
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from 'jose';
import { reasonOf } from '../sidecar/context-token.ts';
import { BearerError } from './bearer-error.ts';
import type { Introspect } from './introspection.ts';

export const TOKEN_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
/** Larger tokens are refused before any decoding. */
export const MAX_TOKEN_BYTES = 8192;

export interface BearerOptions {
  issuer: string;
  audience: string;
  jwksUri: URL;
  /** Required `typ` header (e.g. `at+jwt`, RFC 9068), compared as jose does; absent: not checked. */
  typ?: string;
  skewSeconds: number;
  /** Opaque tokens go here; without it, only JWTs are accepted. */
  introspect?: Introspect;
}

export type Authenticate = (authorization: string | undefined, repeated: boolean) => Promise<JWTPayload>;

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/; // RFC 6750 §2.1 b64token
const JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export function bearerAuthenticator(opts: BearerOptions): Authenticate {
  const keys = createRemoteJWKSet(opts.jwksUri, { timeoutDuration: 3_000, cooldownDuration: 30_000, cacheMaxAge: 600_000 });
  return async (authorization, repeated) => {
    if (repeated) throw new BearerError(400, 'invalid_request', 'more than one authorization header');
    if (authorization === undefined) throw new BearerError(401, undefined, 'a bearer token is required');
    if (!/^Bearer /i.test(authorization)) throw new BearerError(401, undefined, 'only the Bearer scheme is accepted');
    const match = BEARER.exec(authorization);
    if (!match) throw new BearerError(400, 'invalid_request', 'malformed bearer token');
    const token = match[1];
    if (token.length > MAX_TOKEN_BYTES) throw new BearerError(401, 'invalid_token', `token over ${MAX_TOKEN_BYTES} bytes`);
    if (!JWS.test(token)) {
      if (opts.introspect) return opts.introspect(token);
      throw new BearerError(401, 'invalid_token', 'not a JWT access token');
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: opts.issuer,
        audience: opts.audience,
        algorithms: TOKEN_ALGORITHMS,
        typ: opts.typ,
        clockTolerance: opts.skewSeconds,
        requiredClaims: ['exp', 'iat'],
      }));
    } catch (err) {
      const reason = reasonOf(err);
      // The provider's key set could not be fetched or read: not the token's fault, and no verdict.
      if (reason === 'jwks_unavailable' || err instanceof errors.JWKSInvalid || !(err instanceof errors.JOSEError)) throw new BearerError(503, 'temporarily_unavailable', 'the provider\'s JWKS did not answer');
      throw new BearerError(401, 'invalid_token', `token ${reason}`);
    }
    if (payload.iat! > Date.now() / 1000 + opts.skewSeconds) throw new BearerError(401, 'invalid_token', 'token bad_iat');
    return payload;
  };
}
