/**
 * Per-request fingerprints (header `x-palisade-fingerprint`): a compact JWS, ES256, signed
 * with the caller's SVID key and bound to the target, the method, the path and the
 * identity-context token, after RFC 9449 (DPoP). The receiver verifies it with the public
 * key of the caller's mTLS certificate, so no key distribution is needed.
 *
 * The JWS is made and checked with node:crypto directly (ES256 = ECDSA P-256 with SHA-256,
 * signature r‖s, RFC 7518 §3.4): one fixed algorithm on every request's hot path, several
 * times cheaper than a general JOSE library. The signature check (~120 µs of CPU) can run in
 * libuv's threadpool, so the event loop keeps serving other requests meanwhile. The tests
 * check interoperability with jose in both directions.
 */
import { createHash, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { ReplayCache } from './replay-cache.ts';
import { FINGERPRINT_SKEW_SECONDS, FINGERPRINT_TTL_SECONDS } from './fingerprint-limits.ts';

export const FINGERPRINT_HEADER = 'x-palisade-fingerprint';
export const FINGERPRINT_TYP = 'palisade-fp+jwt';
/** Larger tokens are refused before any decoding (a real one is about 600 bytes). */
export const MAX_FINGERPRINT_BYTES = 4096;
export const DEFAULT_TTL_SECONDS = FINGERPRINT_TTL_SECONDS;
export const DEFAULT_SKEW_SECONDS = FINGERPRINT_SKEW_SECONDS;

export interface FingerprintClaims {
  iss: string;
  sub: string;
  aud: string;
  htm: string;
  htu: string;
  iat: number;
  exp: number;
  jti: string;
  ath?: string;
}

/** Why a fingerprint was refused; stable strings, used in logs and tests. */
export type FingerprintReason =
  | 'missing'
  | 'oversized'
  | 'malformed'
  | 'bad_alg'
  | 'bad_typ'
  | 'bad_signature'
  | 'wrong_issuer'
  | 'wrong_subject'
  | 'wrong_audience'
  | 'wrong_method'
  | 'wrong_url'
  | 'iat_skew'
  | 'expired'
  | 'lifetime_too_long'
  | 'ath_mismatch'
  | 'replayed'
  | 'replay_cache_full';

export class FingerprintError extends Error {
  /** 401 for every authentication failure; 503 when the replay cache is full (fail closed). */
  readonly status: number;
  constructor(readonly reason: FingerprintReason) {
    super(`fingerprint rejected: ${reason}`);
    this.status = reason === 'replay_cache_full' ? 503 : 401;
  }
}

/** `htu`: the request path without its query, compared byte for byte. */
export function htuOf(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

/** `ath`: base64url SHA-256 of the identity-context token, as in DPoP. */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url');
}

export interface FingerprintRequest {
  caller: string;
  target: string;
  method: string;
  path: string;
  /** The identity-context JWT forwarded with the request, if any. */
  identityToken?: string;
}

/** Signs a fingerprint for one request. Synchronous, so it is always made with the key in hand. */
export function signFingerprint(
  key: KeyObject,
  req: FingerprintRequest,
  /** `kid`: the signing key's id, so a verifier holding many keys (Envoy's jwt_authn with the CA's JWKS) picks one. */
  opts: { ttlSeconds?: number; now?: number; kid?: string } = {},
): string {
  const iat = Math.floor((opts.now ?? Date.now()) / 1000);
  const claims: FingerprintClaims = {
    iss: req.caller,
    sub: req.caller,
    aud: req.target,
    htm: req.method,
    htu: htuOf(req.path),
    iat,
    exp: iat + (opts.ttlSeconds ?? DEFAULT_TTL_SECONDS),
    jti: randomBytes(16).toString('base64url'),
  };
  if (req.identityToken !== undefined) claims.ath = tokenHash(req.identityToken);
  const header = opts.kid === undefined ? JWS_HEADER : b64(JSON.stringify({ alg: 'ES256', typ: FINGERPRINT_TYP, kid: opts.kid }));
  const input = `${header}.${b64(JSON.stringify(claims))}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

const b64 = (text: string) => Buffer.from(text).toString('base64url');
const HEADER_FIELDS: Readonly<Record<string, unknown>> = Object.freeze({ alg: 'ES256', typ: FINGERPRINT_TYP });
/** The protected header every Palisade signer writes without a `kid`, as encoded: the audit log rebuilds signed bytes with it. */
export const JWS_HEADER = b64(JSON.stringify(HEADER_FIELDS));

export interface VerifyOptions {
  /** Our own SPIFFE ID: the only accepted `aud`. */
  self: string;
  /** The caller's SPIFFE ID from its mTLS certificate. */
  caller: string;
  method: string;
  /** The request path as received (the query is ignored). */
  path: string;
  identityToken?: string;
  skewSeconds?: number;
  /** Longest accepted lifetime (`exp - iat`); bounds how long a jti must be remembered. */
  maxTtlSeconds?: number;
  now?: number;
  /**
   * Check the signature in libuv's threadpool (default) rather than on the event loop: worth
   * it when other requests can proceed meanwhile; alone, the thread hand-off only adds latency.
   */
  offLoop?: boolean;
}

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const JTI = /^[A-Za-z0-9_-]{22,128}$/; // ≥ 128 bits of base64url

/**
 * Verifies a fingerprint and records its jti in `replay`. Checks run cheapest first and the
 * algorithm is pinned before any cryptography, so `none`, HMAC and RSA tokens never reach a
 * verifier. Throws FingerprintError.
 */
export async function verifyFingerprint(
  token: string | undefined,
  callerKey: KeyObject,
  opts: VerifyOptions,
  replay: ReplayCache,
): Promise<FingerprintClaims> {
  if (token === undefined || token === '') throw new FingerprintError('missing');
  if (token.length > MAX_FINGERPRINT_BYTES) throw new FingerprintError('oversized');
  if (!COMPACT_JWS.test(token)) throw new FingerprintError('malformed');
  const firstDot = token.indexOf('.');
  const lastDot = token.lastIndexOf('.');
  const headerPart = token.slice(0, firstDot);
  const payloadPart = token.slice(firstDot + 1, lastDot);
  const signaturePart = token.slice(lastDot + 1);
  if (!canonical(headerPart) || !canonical(payloadPart) || !canonical(signaturePart)) throw new FingerprintError('malformed');
  // The header every Palisade signer writes decodes to alg ES256 and our typ: spare the parse.
  const header = headerPart === JWS_HEADER ? HEADER_FIELDS : json(headerPart);
  if (header.alg !== 'ES256') throw new FingerprintError('bad_alg');
  if (header.typ !== FINGERPRINT_TYP) throw new FingerprintError('bad_typ');
  if (header.crit !== undefined) throw new FingerprintError('malformed'); // no extension is understood here
  const signature = Buffer.from(signaturePart, 'base64url');
  if (signature.length !== 64 || !isP256(callerKey)) throw new FingerprintError('bad_signature');
  const signed = Buffer.from(token.slice(0, lastDot), 'latin1'); // ASCII, checked above
  if (!(await verified(signed, callerKey, signature, opts.offLoop !== false))) throw new FingerprintError('bad_signature');

  const claims = asClaims(json(payloadPart));
  if (claims.sub !== opts.caller) throw new FingerprintError('wrong_subject');
  if (claims.iss !== claims.sub) throw new FingerprintError('wrong_issuer');
  if (claims.aud !== opts.self) throw new FingerprintError('wrong_audience');
  if (claims.htm !== opts.method) throw new FingerprintError('wrong_method');
  if (claims.htu !== htuOf(opts.path)) throw new FingerprintError('wrong_url');

  const skew = opts.skewSeconds ?? DEFAULT_SKEW_SECONDS;
  const now = (opts.now ?? Date.now()) / 1000;
  const maxTtl = opts.maxTtlSeconds ?? DEFAULT_TTL_SECONDS;
  if (claims.exp <= now - skew) throw new FingerprintError('expired');
  if (claims.iat > now + skew || claims.iat < now - maxTtl - skew) throw new FingerprintError('iat_skew');
  if (claims.exp - claims.iat > maxTtl) throw new FingerprintError('lifetime_too_long');
  if (claims.nbf !== undefined && claims.nbf > now + skew) throw new FingerprintError('iat_skew');
  const expected = opts.identityToken === undefined ? undefined : tokenHash(opts.identityToken);
  if (claims.ath !== expected) throw new FingerprintError('ath_mismatch');

  // Remembered until the last moment any verifier would still accept it.
  const verdict = replay.admit(claims.jti, claims.exp + skew, now);
  if (verdict === 'replayed') throw new FingerprintError('replayed');
  if (verdict === 'full') throw new FingerprintError('replay_cache_full');
  return claims;
}

/** Whether a key is EC P-256, remembered per key (a peer's key serves every request on its connection). */
const p256Keys = new WeakMap<KeyObject, boolean>();
function isP256(key: KeyObject): boolean {
  let known = p256Keys.get(key);
  if (known === undefined) p256Keys.set(key, (known = key.asymmetricKeyDetails?.namedCurve === 'prime256v1'));
  return known;
}

/** ES256 signature check (P-256, r‖s), on the event loop or in the threadpool; any error is a failed check. */
export function verified(data: Buffer, key: KeyObject, signature: Buffer, offLoop: true): Promise<boolean>;
export function verified(data: Buffer, key: KeyObject, signature: Buffer, offLoop: false): boolean;
export function verified(data: Buffer, key: KeyObject, signature: Buffer, offLoop: boolean): boolean | Promise<boolean>;
export function verified(data: Buffer, key: KeyObject, signature: Buffer, offLoop: boolean): boolean | Promise<boolean> {
  const ecdsa = { key, dsaEncoding: 'ieee-p1363' } as const;
  if (offLoop) return new Promise((resolve) => verify('sha256', data, ecdsa, signature, (err, ok) => resolve(!err && ok)));
  try {
    return verify('sha256', data, ecdsa, signature);
  } catch {
    return false;
  }
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * Each part must be canonical base64url, so one token has exactly one spelling: no length
 * that leaves a lone character, and the bits of the last character past the data all zero
 * (what decoding and re-encoding would tell, without either). `part` is base64url already.
 */
function canonical(part: string): boolean {
  const rest = part.length % 4;
  if (rest === 0) return true;
  if (rest === 1) return false;
  return (BASE64URL.indexOf(part[part.length - 1]) & (rest === 2 ? 0x0f : 0x03)) === 0;
}

/** A base64url JSON object, or malformed. */
function json(part: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw new FingerprintError('malformed');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FingerprintError('malformed');
  return value as Record<string, unknown>;
}

/** Every claim must have its type; anything else is malformed (never coerced). */
function asClaims(p: Record<string, unknown>): FingerprintClaims & { nbf?: number } {
  const str = (v: unknown) => typeof v === 'string';
  const int = (v: unknown) => Number.isSafeInteger(v);
  if (!str(p.iss) || !str(p.sub) || !str(p.aud) || !str(p.htm) || !str(p.htu)) throw new FingerprintError('malformed');
  if (!int(p.iat) || !int(p.exp) || !str(p.jti) || !JTI.test(p.jti as string)) throw new FingerprintError('malformed');
  if ((p.ath !== undefined && !str(p.ath)) || (p.nbf !== undefined && !int(p.nbf))) throw new FingerprintError('malformed');
  return p as unknown as FingerprintClaims & { nbf?: number };
}
