/**
 * The mesh identity context: the user context the edge mints and every sidecar re-issues,
 * one token per request and per hop. A JWT, ES256, signed with the sending workload's SVID
 * key (`kid` = RFC 7638 thumbprint, as the CA's JWKS names it), `typ` palisade-ctx+jwt:
 *
 *   iss  the sending workload's SPIFFE ID (the edge, or the sidecar that re-issued it)
 *   aud  the receiving workload's SPIFFE ID
 *   iat, exp (≤ 60 s later by default), jti (single use at the receiver)
 *   htm, htu  the method and path (without query) of the request it travels with
 *   act  RFC 8693 delegation chain: { sub: iss, act: <the previous hop's act> }
 *   sub, client_id, scope, acr, amr, … the user's claims as the edge mapped them
 *
 * So a context is good for one request, to one audience, from the one workload whose mTLS
 * connection carries it: the receiver checks all of that (`verifyContext`).
 */
import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { SignJWT, jwtVerify, decodeProtectedHeader, errors, type JWTPayload } from 'jose';
import { jwkThumbprint, type EcJwk } from '../../spiffe/pki.ts';
import { htuOf } from '../../spiffe/fingerprint.ts';

export const CONTEXT_TYP = 'palisade-ctx+jwt';
export const DEFAULT_CONTEXT_TTL_SECONDS = 60;
/** Claims the minter sets; never taken from the user's token or a previous hop. */
export const RESERVED_CLAIMS = ['iss', 'aud', 'iat', 'nbf', 'exp', 'jti', 'htm', 'htu', 'act'];

/** RFC 8693 actor chain: the current actor, then the previous ones nested. */
export interface Actor {
  sub: string;
  act?: Actor;
}

export interface MintRequest {
  /** The signing SVID: its key signs, its SPIFFE ID is `iss` and the newest actor. */
  svid: { spiffeId: string; privateKey: KeyObject };
  target: string;
  method: string;
  path: string;
  /** The user's claims (reserved names are dropped). */
  user: JWTPayload;
  /** The chain so far (the received context's `act`), absent at the edge. */
  previous?: Actor;
  ttlSeconds?: number;
  /** The context never outlives this (unix seconds): the user's token, or the received context. */
  notAfter?: number;
}

const kids = new WeakMap<KeyObject, string>();
function kidOf(key: KeyObject): string {
  let kid = kids.get(key);
  if (kid === undefined) kids.set(key, (kid = jwkThumbprint(createPublicKey(key).export({ format: 'jwk' }) as unknown as EcJwk)));
  return kid;
}

export function mintContext(req: MintRequest): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const exp = Math.min(now + (req.ttlSeconds ?? DEFAULT_CONTEXT_TTL_SECONDS), req.notAfter ?? Infinity);
  const claims: JWTPayload = {};
  for (const [name, value] of Object.entries(req.user)) if (!RESERVED_CLAIMS.includes(name)) claims[name] = value;
  const act: Actor = req.previous ? { sub: req.svid.spiffeId, act: req.previous } : { sub: req.svid.spiffeId };
  return new SignJWT({ ...claims, htm: req.method, htu: htuOf(req.path), act })
    .setProtectedHeader({ alg: 'ES256', typ: CONTEXT_TYP, kid: kidOf(req.svid.privateKey) })
    .setIssuer(req.svid.spiffeId)
    .setAudience(req.target)
    .setIssuedAt(now)
    .setExpirationTime(exp)
    .setJti(randomBytes(16).toString('base64url'))
    .sign(req.svid.privateKey);
}

/** Whether a bearer token claims to be a mesh context (its header says so); nothing is verified. */
export function isContextToken(token: string): boolean {
  try {
    return decodeProtectedHeader(token).typ === CONTEXT_TYP;
  } catch {
    return false;
  }
}

export class ContextError extends Error {
  constructor(readonly reason: string) {
    super(`identity context rejected: ${reason}`);
  }
}

export interface ContextCheck {
  /** Our SPIFFE ID: the only accepted `aud`. */
  self: string;
  /** SPIFFE IDs whose contexts are accepted (`--identity-issuer`). */
  issuers: ReadonlySet<string>;
  /** The mTLS caller: the context must be its own, signed with its certificate's key. */
  caller: string;
  callerKey: KeyObject;
  method: string;
  path: string;
  skewSeconds: number;
  maxTtlSeconds?: number;
}

/**
 * Verifies a mesh context against the connection it arrived on. The key is the caller's
 * certificate key, whose chain the TLS handshake verified and whose standing in the CA's
 * live JWKS the inbound side checked before (revocation). The CA's JWKS alone names no
 * SPIFFE ID, so any live workload key would do there; binding `iss` to the mTLS peer makes
 * a context usable only by the workload it was issued by. Throws ContextError.
 */
export async function verifyContext(token: string, check: ContextCheck): Promise<JWTPayload & { act: Actor; jti: string; exp: number }> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, check.callerKey, {
      algorithms: ['ES256'],
      typ: CONTEXT_TYP,
      audience: check.self,
      clockTolerance: check.skewSeconds,
      requiredClaims: ['iss', 'iat', 'exp', 'jti', 'htm', 'htu'],
    }));
  } catch (err) {
    throw new ContextError(reasonOf(err));
  }
  if (payload.iss !== check.caller) throw new ContextError('issuer_not_caller');
  if (!check.issuers.has(payload.iss)) throw new ContextError('untrusted_issuer');
  const now = Date.now() / 1000;
  const iat = payload.iat!;
  if (iat > now + check.skewSeconds) throw new ContextError('bad_iat');
  if (payload.exp! - iat > (check.maxTtlSeconds ?? DEFAULT_CONTEXT_TTL_SECONDS)) throw new ContextError('lifetime_too_long');
  if (payload.htm !== check.method || payload.htu !== htuOf(check.path)) throw new ContextError('wrong_request');
  if (!isActor(payload.act) || payload.act.sub !== payload.iss) throw new ContextError('bad_act');
  return payload as JWTPayload & { act: Actor; jti: string; exp: number };
}

function isActor(value: unknown, depth = 0): value is Actor {
  if (typeof value !== 'object' || value === null || depth > 32) return false;
  const { sub, act } = value as Partial<Actor>;
  return typeof sub === 'string' && (act === undefined || isActor(act, depth + 1));
}

export function reasonOf(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) return `bad_${err.claim}`;
  if (err instanceof errors.JOSEAlgNotAllowed) return 'bad_alg';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad_signature';
  if (err instanceof errors.JWKSNoMatchingKey) return 'unknown_key';
  if (err instanceof errors.JWKSTimeout) return 'jwks_unavailable';
  return 'malformed';
}
