/**
 * A caller's fingerprint as evidence in an audit entry, checked as a third party would:
 * by `palisade audit verify` (on its helper threads, audit/entry-runs.ts) for every stored
 * entry, and by the agent for each Envoy access-log entry before it appends it.
 */
import { createHash, type KeyObject, type X509Certificate } from 'node:crypto';
import { FINGERPRINT_TYP, htuOf, verified, type FingerprintClaims } from '../spiffe/fingerprint.ts';
import { verifyChainAt, spiffeIdOfCert, ChainError } from './chain.ts';
import type { AuditEntry } from './entry.ts';
import { isReduced, signingInput, type ReducedFingerprint, type SignedFields } from './fingerprint.ts';

/** What a fingerprint is checked against: an entry as stored (any version), or a decision about to be appended. */
export type EvidenceFields = Omit<AuditEntry, 'v' | 'seq' | 'prev'>;

/** Tolerated difference between a fingerprint's times and the entry's (s): the sidecar's skew default. */
const SKEW_SECONDS = 5;

export class EvidenceError extends Error {}

/**
 * An ES256 signature check: `signature` (base64url) over `signed` with the certificate's key;
 * its answer, `R`, is a promise where checks are run in the threadpool, a boolean where a
 * helper thread runs them one after another.
 */
export type SignatureCheck<R = Promise<boolean>> = (cert: { id: string; key: KeyObject }, signed: string, signature: string) => R;

/** One check per threadpool job: for a few signatures at a time (the agent's Envoy access-log entries). */
export const threadpoolCheck: SignatureCheck = (cert, signed, signature) => verified(Buffer.from(signed), cert.key, Buffer.from(signature, 'base64url'), true);

/** What an entry is checked against, read once per caller certificate (X509Certificate's getters parse on every call). */
interface CallerCert {
  /** SHA-256 of its DER, hex. */
  id: string;
  key: KeyObject;
  spiffeId: string | null;
  /** Lowercase hex. */
  serial: string;
  notBefore: number;
  notAfter: number;
}

/**
 * The caller's fingerprint, checked as a third party would: the caller's certificate (by its
 * hash: from certs/ for verify, from Envoy's access log for the agent before it appends)
 * chains to the bundle at the fingerprint's time and names the caller, the JWS verifies with
 * its key, and its claims are this entry's request.
 */
export class FingerprintEvidence<R = Promise<boolean>> {
  readonly #certs = new Map<string, CallerCert>();
  /** The last fingerprint header (as encoded) found to be ES256 and FINGERPRINT_TYP. */
  #fingerprintHeader: string | undefined;
  constructor(
    private readonly certificate: (id: string) => string | undefined,
    private readonly bundle: X509Certificate[],
    /** How signatures are checked; null: not at all (claims and certificates still are). */
    private readonly signatures: SignatureCheck<R> | null,
  ) {}

  /**
   * Throws EvidenceError for what is checked at once; the signature check is returned (null:
   * no fingerprint, or signatures not checked). `reduced`: the entry's version allows a
   * fingerprint stored reduced (audit/fingerprint.ts), whose claims are the entry's own fields.
   */
  check(entry: EvidenceFields, reduced = false): R | null {
    const decided = entry.mode !== null || entry.decision === 'allow';
    const stored = entry.fingerprint;
    if (stored === null) {
      if (decided) throw new EvidenceError('a decided request without the caller\'s fingerprint');
      return null;
    }
    const whole = typeof stored === 'string';
    if (!whole && !(reduced && isReduced(stored))) throw new EvidenceError('fingerprint is not a JWS');
    if (!entry.caller) throw new EvidenceError('a fingerprint without a caller');
    const jws = whole ? this.#bound(stored, entry as EvidenceFields & { caller: object }) : undefined;
    const { iat, exp } = jws?.claims ?? (stored as ReducedFingerprint);
    const time = timeMs(entry.time) / 1000;
    if (!(time >= iat - SKEW_SECONDS && time <= exp + SKEW_SECONDS)) throw new EvidenceError(`fingerprint was not valid at the entry's time ${entry.time}`);

    const cert = this.#cert(entry.caller.cert, iat * 1000);
    if (cert.spiffeId !== entry.caller.id) throw new EvidenceError(`caller certificate names ${cert.spiffeId}, not ${entry.caller.id}`);
    if (cert.serial !== entry.caller.serial.toLowerCase()) throw new EvidenceError('caller certificate serial differs from the entry\'s');
    if (!this.signatures) return null;
    const [signed, signature] = jws ? [jws.signed, jws.signature] : [signingInput(entry as SignedFields, stored as ReducedFingerprint), (stored as ReducedFingerprint).sig];
    return this.signatures(cert, signed, signature);
  }

  /** A fingerprint kept whole: an ES256 Palisade fingerprint whose claims are this entry's request. */
  #bound(fingerprint: string, entry: EvidenceFields & { caller: { id: string } }): { claims: FingerprintClaims; signed: string; signature: string } {
    const parts = fingerprint.split('.');
    if (parts.length !== 3) throw new EvidenceError('fingerprint is not a compact JWS');
    let header: Record<string, unknown> | undefined;
    let claims: FingerprintClaims;
    try {
      // Every fingerprint of a log has the same header: decoded once, not per entry.
      if (parts[0] !== this.#fingerprintHeader) header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8'));
      claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    } catch {
      throw new EvidenceError('fingerprint is not a JWS');
    }
    if (header) {
      if (header.alg !== 'ES256' || header.typ !== FINGERPRINT_TYP) throw new EvidenceError('fingerprint is not an ES256 Palisade fingerprint');
      this.#fingerprintHeader = parts[0];
    }
    const mismatch = (claim: string, got: unknown, want: unknown) => new EvidenceError(`fingerprint belongs to another request: its ${claim} is ${JSON.stringify(got)}, the entry's ${JSON.stringify(want)}`);
    if (claims.sub !== entry.caller.id || claims.iss !== entry.caller.id) throw mismatch('sub', claims.sub, entry.caller.id);
    if (claims.aud !== entry.service) throw mismatch('aud', claims.aud, entry.service);
    if (claims.htm !== entry.method) throw mismatch('htm', claims.htm, entry.method);
    if (claims.htu !== htuOf(entry.path)) throw mismatch('htu', claims.htu, htuOf(entry.path));
    if ((claims.ath ?? null) !== (entry.user?.token_sha256 ?? null)) throw mismatch('ath', claims.ath ?? null, entry.user?.token_sha256 ?? null);
    return { claims, signed: `${parts[0]}.${parts[1]}`, signature: parts[2]! };
  }

  /** The caller certificate `id` (SHA-256 of its DER), checked to the bundle and valid at `atMs`. */
  #cert(id: string, atMs: number): CallerCert {
    let caller = this.#certs.get(id);
    if (!caller) {
      const at = new Date(atMs);
      let cert: X509Certificate;
      const pem = this.certificate(id);
      if (pem === undefined) throw new EvidenceError(`caller certificate ${id} is not in certs/`);
      try {
        cert = verifyChainAt(pem, this.bundle, at);
      } catch (err) {
        if (err instanceof ChainError) throw new EvidenceError(`caller certificate: ${err.message}`);
        throw err;
      }
      if (createHash('sha256').update(cert.raw).digest('hex') !== id) throw new EvidenceError(`caller certificate ${id} in certs/ is another certificate`);
      caller = { id, key: cert.publicKey, spiffeId: spiffeIdOfCert(cert), serial: cert.serialNumber.toLowerCase(), notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) };
      this.#certs.set(id, caller);
    }
    if (!(atMs >= caller.notBefore && atMs <= caller.notAfter)) throw new EvidenceError(`caller certificate was not valid when the fingerprint was made (${new Date(atMs).toISOString()})`);
    return caller;
  }
}

/** The last second (`YYYY-MM-DDTHH:MM:SS`) timeMs parsed, and its time (ms). */
let second = { text: '', ms: NaN };

/**
 * Date.parse(time), with the date and time of day parsed once for all the entries of one
 * second: the agent writes `toISOString()`'s form, and entries come in order, hundreds a
 * second. Anything else (another form, not a string) is Date.parse's to judge.
 */
function timeMs(time: unknown): number {
  // 24:00:00 is a valid time of day only with .000 milliseconds.
  if (typeof time !== 'string' || time.length !== 24 || time[19] !== '.' || time[23] !== 'Z' || time.startsWith('24', 11)) return Date.parse(time as string);
  let ms = 0;
  for (let i = 20; i < 23; i++) {
    const digit = time.charCodeAt(i) - 48;
    if (!(digit >= 0 && digit <= 9)) return Date.parse(time);
    ms = 10 * ms + digit;
  }
  const text = time.slice(0, 19);
  if (text !== second.text) second = { text, ms: Date.parse(`${text}.000Z`) };
  return second.ms + ms;
}
