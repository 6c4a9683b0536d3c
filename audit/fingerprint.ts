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
import { PlainField, RepeatedText, isPlain } from './json-text.ts';

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
  // Not startsWith: on Node 20's V8 it costs three times a slice and a compare.
  if (jws === null || entry.caller === null || jws.slice(0, HEADER_DOT.length) !== HEADER_DOT) return jws;
  const end = jws.lastIndexOf('.');
  if (!claims) {
    try {
      claims = JSON.parse(Buffer.from(jws.slice(HEADER_DOT.length, end), 'base64url').toString('utf8'));
    } catch {
      return jws;
    }
  }
  const { iat, exp, jti } = claims ?? {};
  if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp) || typeof jti !== 'string') return jws;
  const reduced = { iat: iat as number, exp: exp as number, jti, sig: jws.slice(end + 1) };
  return jws.slice(HEADER_DOT.length, end) === signedPayload(entry as SignedFields, reduced) ? reduced : jws;
}

const HEADER_DOT = `${JWS_HEADER}.`;

/** The JWS signing input (`header.payload`) a reduced fingerprint was signed over, rebuilt from its entry. */
export function signingInput(entry: SignedFields, f: ReducedFingerprint): string {
  return HEADER_DOT + signedPayload(entry, f);
}

/** The signing input's payload part: the base64url of the claims' JSON. */
function signedPayload(entry: SignedFields, f: ReducedFingerprint): string {
  const json = claimsJson(entry.caller.id, entry.service, entry.method, htuOf(entry.path), f.iat, f.exp, f.jti, entry.user?.token_sha256);
  // UTF-8 takes at most 3 bytes per UTF-16 code unit.
  return json.length * 3 <= utf8.length ? utf8.toString('base64url', 0, utf8.write(json)) : Buffer.from(json).toString('base64url');
}

/** Where the claims' JSON is encoded (every call is synchronous): no Buffer per entry. */
const utf8 = Buffer.alloc(4096);

/**
 * The claims' JSON exactly as signFingerprint writes it: JSON.stringify of the claims in this
 * order, `ath` left out when undefined. Strings JSON has nothing to escape in (printable
 * ASCII but `"` and `\`: SPIFFE IDs, methods, jti and token hashes always, paths nearly
 * always) and safe integers are written as they are, which is what JSON.stringify writes for
 * them, at a quarter of its cost (it is on every audited request); anything else goes
 * through JSON.stringify.
 */
function claimsJson(id: string, service: string, method: string, htu: string, iat: number, exp: number, jti: string, ath: string | undefined): string {
  const head = Number.isSafeInteger(iat) && Number.isSafeInteger(exp) && plain.path.test(htu) && plain.jti.test(jti) ? claimsHead.of(id, service, method) : undefined;
  const tail = ath === undefined ? '}' : claimsTail.of(ath);
  if (head !== undefined && tail !== undefined) return `${head}${htu}","iat":${iat},"exp":${exp},"jti":"${jti}"${tail}`;
  return JSON.stringify({ iss: id, sub: id, aud: service, htm: method, htu, iat, exp, jti, ath });
}

/** The claims' runs over values that repeat from request to request (audit/json-text.ts, RepeatedText). */
const claimsHead = new RepeatedText((id, service, method) =>
  isPlain(id) && isPlain(service) && isPlain(method) ? `{"iss":"${id}","sub":"${id}","aud":"${service}","htm":"${method}","htu":"` : undefined,
);
const claimsTail = new RepeatedText((ath) => (isPlain(ath) ? `,"ath":"${ath}"}` : undefined));

/**
 * The fields the signed claims and the entry line share that change from request to request:
 * each tested once per entry, the line's template (audit/entry.ts) testing it again against
 * the same memory.
 */
export const plain = {
  path: new PlainField(),
  jti: new PlainField(),
};

export function isReduced(value: unknown): value is ReducedFingerprint {
  const f = value as ReducedFingerprint;
  return typeof f === 'object' && f !== null && Number.isSafeInteger(f.iat) && Number.isSafeInteger(f.exp) && typeof f.jti === 'string' && typeof f.sig === 'string' && Object.keys(f).length === 4;
}
