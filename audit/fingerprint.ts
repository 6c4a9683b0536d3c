/**
 * The caller's fingerprint as an entry (v2) stores it. Every claim of a Palisade fingerprint
 * but `iat`, `exp` and `jti` repeats a field of the entry itself (`iss`/`sub` the caller,
 * `aud` the service, `htm` the method, `htu` the path, `ath` the token hash), so the entry
 * keeps only `{ iat, exp, jti, sig }` and the signed bytes are rebuilt from the entry. It is
 * kept reduced only when the rebuilt bytes are exactly the ones the caller signed (checked as
 * the entry is written); any other JWS (a `kid` in its header, claims in another order or
 * spelling, another signer) is kept whole, as sent, so every entry stays re-verifiable offline.
 */
import { JWS_HEADER, htuOf } from '../spiffe/fingerprint.ts';

export interface ReducedFingerprint {
  iat: number;
  exp: number;
  jti: string;
  /** The JWS's signature part, as sent (base64url). */
  sig: string;
}

/** A JWS as sent, or reduced. */
export type StoredFingerprint = string | ReducedFingerprint;

/** The entry fields the signed claims are rebuilt from. */
export interface SignedFields {
  caller: { id: string };
  service: string;
  method: string;
  path: string;
  user: { token_sha256: string } | null;
}

/**
 * How an entry stores its fingerprint `jws`: reduced when the entry's fields rebuild it byte
 * for byte, else as sent. `claims`: its times and jti, when the caller decoded them already
 * (they only pick what to rebuild; the bytes are compared all the same).
 */
export function storedFingerprint(
  jws: string | null,
  entry: Omit<SignedFields, 'caller'> & { caller: SignedFields['caller'] | null },
  claims?: { iat: unknown; exp: unknown; jti: unknown },
): StoredFingerprint | null {
  if (jws === null || entry.caller === null || !jws.startsWith(`${JWS_HEADER}.`)) return jws;
  const end = jws.lastIndexOf('.');
  if (!claims) {
    try {
      claims = JSON.parse(Buffer.from(jws.slice(JWS_HEADER.length + 1, end), 'base64url').toString('utf8'));
    } catch {
      return jws;
    }
  }
  const { iat, exp, jti } = claims ?? {};
  if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp) || typeof jti !== 'string') return jws;
  const reduced = { iat: iat as number, exp: exp as number, jti, sig: jws.slice(end + 1) };
  return signingInput(entry as SignedFields, reduced) === jws.slice(0, end) ? reduced : jws;
}

/** The JWS signing input (`header.payload`) a reduced fingerprint was signed over, rebuilt from its entry. */
export function signingInput(entry: SignedFields, f: ReducedFingerprint): string {
  // The claims in the order signFingerprint writes them; JSON.stringify leaves out an undefined `ath`.
  const claims = { iss: entry.caller.id, sub: entry.caller.id, aud: entry.service, htm: entry.method, htu: htuOf(entry.path), iat: f.iat, exp: f.exp, jti: f.jti, ath: entry.user?.token_sha256 };
  return `${JWS_HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
}

export function isReduced(value: unknown): value is ReducedFingerprint {
  const f = value as ReducedFingerprint;
  return typeof f === 'object' && f !== null && Number.isSafeInteger(f.iat) && Number.isSafeInteger(f.exp) && typeof f.jti === 'string' && typeof f.sig === 'string' && Object.keys(f).length === 4;
}
