/**
 * The identity context: an end-user JWT from the edge issuer in `authorization: Bearer`,
 * verified here the way Envoy's jwt_authn would before the filter sees its claims as the
 * `user` metadata. No header: the request is evaluated without a user. Anything present
 * that does not verify (other schemes included) is refused: fail closed.
 */
import { readFile } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { reasonOf } from './context-token.ts';

/** Asymmetric only: an HMAC key would be a shared secret every verifier could sign with. */
export const IDENTITY_ALGORITHMS = ['ES256', 'RS256', 'EdDSA'];
const MAX_TOKEN_BYTES = 8192;
/** Verified tokens remembered (the same user token rides on many requests), oldest dropped first. */
const CACHE_ENTRIES = 10_000;

export interface IdentityContextOptions {
  issuer: string;
  audience: string;
  /** A JWKS file path or an http(s) URL. */
  jwks: string;
  skewSeconds?: number;
}

export interface IdentityContext {
  token: string;
  claims: JWTPayload;
}

export class IdentityContextError extends Error {
  readonly status = 401;
  constructor(readonly reason: string) {
    super(`identity context rejected: ${reason}`);
  }
}

/** The request a token arrived with, for verifiers that bind a context to its connection and request. */
export interface RequestBinding {
  /** The mTLS caller's SPIFFE ID and certificate key. */
  caller: string;
  callerKey: KeyObject;
  method: string;
  path: string;
}

export type IdentityVerifier = (authorization: string | undefined, request?: RequestBinding) => Promise<IdentityContext | undefined>;

export async function createIdentityVerifier(opts: IdentityContextOptions): Promise<IdentityVerifier> {
  const keys = await loadJwks(opts.jwks);
  const verifyOptions = {
    issuer: opts.issuer,
    audience: opts.audience,
    algorithms: IDENTITY_ALGORITHMS,
    clockTolerance: opts.skewSeconds ?? 30,
    requiredClaims: ['exp'],
  };
  // A signature verified once holds for these exact bytes; only the time checks are redone.
  const verified = new Map<string, JWTPayload>();
  return async (authorization) => {
    const token = bearerToken(authorization);
    if (token === undefined) return undefined;
    const cached = verified.get(token);
    if (cached) {
      const now = Date.now() / 1000;
      if ((cached.exp as number) <= now - verifyOptions.clockTolerance) throw new IdentityContextError('expired');
      if (typeof cached.nbf === 'number' && cached.nbf > now + verifyOptions.clockTolerance) throw new IdentityContextError('bad_nbf');
      return { token, claims: cached };
    }
    try {
      const { payload } = await jwtVerify(token, keys, verifyOptions);
      if (verified.size >= CACHE_ENTRIES) verified.delete(verified.keys().next().value!);
      verified.set(token, payload);
      return { token, claims: payload };
    } catch (err) {
      throw new IdentityContextError(reasonOf(err));
    }
  };
}

/** The token of an `authorization: Bearer` header; undefined without the header. Throws IdentityContextError. */
export function bearerToken(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  const match = /^Bearer ([A-Za-z0-9_.-]+)$/.exec(authorization);
  if (!match) throw new IdentityContextError('not_bearer');
  if (match[1].length > MAX_TOKEN_BYTES) throw new IdentityContextError('oversized');
  return match[1];
}

async function loadJwks(source: string): Promise<JWTVerifyGetKey> {
  if (/^https?:\/\//.test(source)) return createRemoteJWKSet(new URL(source), { timeoutDuration: 2000 });
  let jwks: unknown;
  try {
    jwks = JSON.parse(await readFile(source, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read JWKS ${source}: ${(err as Error).message}`);
  }
  try {
    return createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]);
  } catch (err) {
    throw new Error(`${source} is not a JWKS: ${(err as Error).message}`);
  }
}
