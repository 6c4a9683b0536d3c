/**
 * The identity context: an end-user JWT from the edge issuer in `authorization: Bearer`,
 * verified here the way Envoy's jwt_authn would before the filter sees its claims as the
 * `user` metadata. No header: the request is evaluated without a user. Anything present
 * that does not verify (other schemes included) is refused: fail closed.
 *
 * jose loads only when an agent is given an identity issuer: most sidecars have none, and
 * it is ~2.5 MB of an idle agent's resident memory (bench/startup.ts).
 */
import { readFile } from 'node:fs/promises';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';

type Jose = typeof import('jose');

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

export type IdentityVerifier = (authorization: string | undefined) => Promise<IdentityContext | undefined>;

export async function createIdentityVerifier(opts: IdentityContextOptions): Promise<IdentityVerifier> {
  const jose = await import('jose');
  const keys = await loadJwks(jose, opts.jwks);
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
    if (authorization === undefined) return undefined;
    const match = /^Bearer ([A-Za-z0-9_.-]+)$/.exec(authorization);
    if (!match) throw new IdentityContextError('not_bearer');
    const token = match[1];
    if (token.length > MAX_TOKEN_BYTES) throw new IdentityContextError('oversized');
    const cached = verified.get(token);
    if (cached) {
      const now = Date.now() / 1000;
      if ((cached.exp as number) <= now - verifyOptions.clockTolerance) throw new IdentityContextError('expired');
      if (typeof cached.nbf === 'number' && cached.nbf > now + verifyOptions.clockTolerance) throw new IdentityContextError('bad_nbf');
      return { token, claims: cached };
    }
    try {
      const { payload } = await jose.jwtVerify(token, keys, verifyOptions);
      if (verified.size >= CACHE_ENTRIES) verified.delete(verified.keys().next().value!);
      verified.set(token, payload);
      return { token, claims: payload };
    } catch (err) {
      throw new IdentityContextError(reasonOf(jose.errors, err));
    }
  };
}

async function loadJwks(jose: Jose, source: string): Promise<JWTVerifyGetKey> {
  if (/^https?:\/\//.test(source)) return jose.createRemoteJWKSet(new URL(source), { timeoutDuration: 2000 });
  let jwks: unknown;
  try {
    jwks = JSON.parse(await readFile(source, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read JWKS ${source}: ${(err as Error).message}`);
  }
  try {
    return jose.createLocalJWKSet(jwks as Parameters<Jose['createLocalJWKSet']>[0]);
  } catch (err) {
    throw new Error(`${source} is not a JWKS: ${(err as Error).message}`);
  }
}

function reasonOf(errors: Jose['errors'], err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) return `bad_${err.claim}`;
  if (err instanceof errors.JOSEAlgNotAllowed) return 'bad_alg';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad_signature';
  if (err instanceof errors.JWKSNoMatchingKey) return 'unknown_key';
  if (err instanceof errors.JWKSTimeout) return 'jwks_unavailable';
  return 'malformed';
}
