/**
 * `palisade audit verify`: everything a log claims, checked offline with the trust bundle
 * alone. Every entry in order (numbering, the hash chain, the caller's fingerprint against
 * the caller's certificate at the time it was made and against the entry it sits in),
 * every checkpoint (format, signature by the log's own agent with a chain valid at its
 * time, its root over the entries, consistency with the one before), and optionally a
 * checkpoint kept elsewhere, which catches truncation and rollback. Stops at the first
 * failure, naming the entry or checkpoint and why.
 */
import { createHash, verify, type KeyObject, type X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { isAscii } from 'node:buffer';
import { FINGERPRINT_TYP, htuOf, type FingerprintClaims } from '../spiffe/fingerprint.ts';
import { MerkleTree, verifyConsistency } from './merkle.ts';
import { parseCheckpoint, checkSignature, originIdentity, type Checkpoint } from './checkpoint.ts';
import { verifyChainAt, spiffeIdOfCert, loadBundle, ChainError } from './chain.ts';
import { ORIGIN, certFile, chainFileOf, checkpointFile, listCheckpoints, listSegments } from './files.ts';
import { HelperError, VerifyHelpers } from './helpers.ts';
import type { AuditEntry } from './entry.ts';
import { isReduced, signingInput, type ReducedFingerprint, type SignedFields } from './fingerprint.ts';

/** What a fingerprint is checked against: an entry as stored (any version), or a decision about to be appended. */
export type EvidenceFields = Omit<AuditEntry, 'v' | 'seq' | 'prev'>;

/** Tolerated difference between a fingerprint's times and the entry's (s): the sidecar's skew default. */
const SKEW_SECONDS = 5;

export class VerifyError extends Error {}

export interface TrustedCheckpoint {
  text: string;
  chainPem: string;
  /** For messages. */
  name: string;
}

export interface Verified {
  entries: number;
  checkpoints: number;
  origin: string;
  /** Entries after the last checkpoint: chained, but not yet signed. */
  unsigned: number;
  tree: MerkleTree;
}

/** Fingerprint signatures being checked at once; a failure is still reported at its own entry. */
const SIGNATURES_IN_FLIGHT = 4096;

export interface VerifyOptions {
  /**
   * false: every check but the fingerprints' ECDSA signatures (their claims, certificates and
   * chains are still checked). Only for measuring the log's structure apart from the
   * signatures (bench/audit.ts); `palisade audit verify` always checks them.
   */
  signatures?: boolean;
}

export async function verifyLog(dir: string, bundlePem: string, trusted?: TrustedCheckpoint, options: VerifyOptions = {}): Promise<Verified> {
  const bundle = loadBundle(bundlePem);
  const originFile = path.join(dir, ORIGIN);
  if (!existsSync(originFile)) throw new VerifyError(`${dir} is not an audit log (no ${ORIGIN} file)`);
  const origin = readFileSync(originFile, 'utf8').trim();
  const helpers = new VerifyHelpers();
  try {
    const evidence = new FingerprintEvidence(storedCertificate(dir), bundle, options.signatures === false ? null : (...job) => helpers.signature(...job));
    const tree = await verifyEntries(dir, originIdentity(origin), evidence, helpers);
    return verifyCheckpoints(dir, origin, bundle, tree, trusted);
  } finally {
    await helpers.close();
  }
}

/** Every entry in order, into the tree; throws VerifyError at the first that fails. */
async function verifyEntries(dir: string, service: string, evidence: FingerprintEvidence, helpers: VerifyHelpers): Promise<MerkleTree> {
  const tree = new MerkleTree();
  /** Signature checks under way, oldest first, with the entry's number and where it is (said only when it failed). */
  const signatures: { n: number; where: () => string; ok: Promise<boolean> }[] = [];
  /** Waits for the signatures of earlier entries until `left` are under way, so the first failure named is the earliest. */
  const settle = async (left = 0) => {
    helpers.flush();
    let done = 0;
    try {
      while (signatures.length - done > left) {
        const { n, where, ok } = signatures[done++]!;
        if (!(await ok)) throw new VerifyError(`${entryAt(n, where)}: fingerprint signature does not verify with the caller's certificate`);
      }
    } finally {
      signatures.splice(0, done);
    }
    helpers.check();
  };
  const fail = async (message: string): Promise<never> => {
    await settle();
    throw new VerifyError(message);
  };
  /** The base64 leaf hash of the entry before: what its `prev` must say. */
  let prev = '';
  /** What is wrong with entry `n` (its line's `text`, `where` it is), if anything; its fingerprint signature joins `signatures`. */
  const checkEntry = (text: string, n: number, where: () => string, seqAfter: () => number | undefined): string | undefined => {
    let entry: AuditEntry;
    try {
      entry = JSON.parse(text);
    } catch {
      return `${entryAt(n, where)}: not valid JSON: the entry was altered`;
    }
    if ((entry?.v !== 1 && entry?.v !== 2) || !Number.isSafeInteger(entry.seq)) return `${entryAt(n, where)}: not an audit entry`;
    if (entry.seq !== n) {
      if (entry.seq === n + 1 && seqAfter() === n) return `${entryAt(n, where)}: entries ${n} and ${n + 1} are swapped`;
      if (entry.seq < n) return `${entryAt(n, where)}: entry ${entry.seq} appears again where entry ${n} belongs: an entry was inserted`;
      return `${entryAt(n, where)}: found entry ${entry.seq} where entry ${n} belongs: entries ${n}–${entry.seq - 1} were deleted`;
    }
    if (entry.prev !== prev) return `entry ${n - 1}: altered (entry ${n}, ${where()}, recorded another hash for it)`;
    if (entry.service !== service) return `${entryAt(n, where)}: service ${entry.service} is not the log's agent ${service}`;
    try {
      const ok = evidence.check(entry, entry.v === 2);
      if (ok) signatures.push({ n, where, ok });
    } catch (err) {
      // The entry is the forger's input: anything in it that cannot be checked (a field of
      // another type, a certificate that does not parse) fails that entry, with its position.
      return `${entryAt(n, where)}: ${err instanceof EvidenceError ? err.message : `malformed evidence (${(err as Error).message})`}`;
    }
    return undefined;
  };
  const segments = listSegments(dir);
  for (const [s, file] of segments.entries()) {
    const name = path.relative(dir, file);
    let number = 0;
    const ranges = helpers.segment(file, statSync(file).size);
    try {
      for await (const range of ranges) {
        const { bytes, leaves } = range;
        // An entry is almost always ASCII: then each line decodes byte for character, the cheapest way.
        const encoding = isAscii(bytes.subarray(range.start, range.end)) ? 'latin1' : 'utf8';
        let start = range.start;
        for (let k = 0, nl = bytes.indexOf(10, start); nl >= 0 && nl < range.end; k++, nl = bytes.indexOf(10, start)) {
          const line = ++number;
          const where = () => `${name}:${line}`;
          const problem = checkEntry(bytes.toString(encoding, start, nl), tree.size, where, () => seqOf(lineAfter(segments, s, nl + 1)));
          if (problem !== undefined) return await fail(problem);
          tree.append(leaves.subarray(32 * k, 32 * k + 32));
          prev = leaves.toString('base64', 32 * k, 32 * k + 32);
          start = nl + 1;
        }
        if (range.done && range.end > start) return await fail(`${name}:${number + 1}: entry ${tree.size} is cut short (no newline): a torn write the agent repairs on start, or truncation`);
        if (signatures.length >= SIGNATURES_IN_FLIGHT) await settle(SIGNATURES_IN_FLIGHT / 2);
      }
    } catch (err) {
      if (err instanceof HelperError) throw new VerifyError(err.message);
      throw err;
    }
  }
  await settle();
  return tree;
}

/** How messages name an entry: its number and where it is stored. */
const entryAt = (n: number, where: () => string) => `entry ${n} (${where()})`;

/** The text of the line at byte `offset` of segment `s`, or of the next segment's first line at its end (only to tell a swap from a deletion). */
function lineAfter(segments: string[], s: number, offset: number): string | undefined {
  let data = readFileSync(segments[s]!);
  if (offset >= data.length) {
    if (s + 1 >= segments.length) return undefined;
    [data, offset] = [readFileSync(segments[s + 1]!), 0];
  }
  const nl = data.indexOf(10, offset);
  return nl < 0 ? undefined : data.subarray(offset, nl).toString('utf8');
}

function verifyCheckpoints(dir: string, origin: string, bundle: X509Certificate[], tree: MerkleTree, trusted?: TrustedCheckpoint): Verified {
  let previous: Checkpoint | null = null;
  const files = listCheckpoints(dir);
  for (const file of files) {
    const name = path.relative(dir, file);
    const cp = checkCheckpoint(readFileSync(file, 'utf8'), chainPem(file, name), bundle, origin, name);
    if (file !== checkpointFile(dir, cp.size)) throw new VerifyError(`${name}: commits to ${cp.size} entries; its name says otherwise (renamed)`);
    matchTree(cp, tree, name);
    if (previous) {
      if (cp.time < previous.time) throw new VerifyError(`${name}: signed before the checkpoint it follows`);
      const proof = tree.consistencyProof(previous.size, cp.size);
      if (!verifyConsistency(previous.size, cp.size, proof, previous.root, cp.root)) throw new VerifyError(`${name}: not consistent with the checkpoint before it`);
    }
    previous = cp;
  }
  if (trusted) {
    const cp = checkCheckpoint(trusted.text, trusted.chainPem, bundle, origin, `trusted checkpoint ${trusted.name}`);
    matchTree(cp, tree, `trusted checkpoint ${trusted.name}`);
  }
  return { entries: tree.size, checkpoints: files.length, origin, unsigned: tree.size - (previous?.size ?? 0), tree };
}

function chainPem(file: string, name: string): string {
  const chain = chainFileOf(file);
  if (!existsSync(chain)) throw new VerifyError(`${name}: no certificate chain beside it (${path.basename(chain)})`);
  return readFileSync(chain, 'utf8');
}

function checkCheckpoint(text: string, chain: string, bundle: X509Certificate[], origin: string, name: string): Checkpoint {
  try {
    const cp = parseCheckpoint(text);
    if (cp.origin !== origin) throw new VerifyError(`${name}: belongs to log ${cp.origin}, not ${origin}`);
    const leaf = verifyChainAt(chain, bundle, new Date(cp.time));
    checkSignature(cp, leaf, spiffeIdOfCert(leaf));
    return cp;
  } catch (err) {
    if (err instanceof VerifyError) throw err;
    throw new VerifyError(`${name}: ${(err as Error).message}`);
  }
}

function matchTree(cp: Checkpoint, tree: MerkleTree, name: string): void {
  if (cp.size > tree.size) throw new VerifyError(`${name}: commits to ${cp.size} entries but the log holds ${tree.size}: entries ${tree.size}–${cp.size - 1} were removed (truncated or rolled back)`);
  if (!cp.root.equals(tree.root(cp.size))) throw new VerifyError(`${name}: its root hash does not match entries 0–${cp.size - 1}: the entries were rewritten after it was signed`);
}

function seqOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text).seq;
  } catch {
    return undefined;
  }
}

export class EvidenceError extends Error {}

/** A caller certificate of the log by its id (SHA-256 of its DER, hex): the PEM in certs/, or undefined. */
function storedCertificate(dir: string): (id: string) => string | undefined {
  return (id) => {
    const file = certFile(dir, id);
    return /^[0-9a-f]{64}$/.test(id) && existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  };
}

/** An ES256 signature check: `signature` (base64url) over `signed` with the certificate's key. */
export type SignatureCheck = (cert: { id: string; key: KeyObject }, signed: string, signature: string) => Promise<boolean>;

/** One check per threadpool job: for a few signatures at a time (the agent's Envoy access-log entries). */
export const threadpoolCheck: SignatureCheck = (cert, signed, signature) =>
  new Promise((resolve) => verify('sha256', Buffer.from(signed), { key: cert.key, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64url'), (err, valid) => resolve(!err && valid)));

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
export class FingerprintEvidence {
  readonly #certs = new Map<string, CallerCert>();
  /** The last fingerprint header (as encoded) found to be ES256 and FINGERPRINT_TYP. */
  #fingerprintHeader: string | undefined;
  constructor(
    private readonly certificate: (id: string) => string | undefined,
    private readonly bundle: X509Certificate[],
    /** How signatures are checked; null: not at all (claims and certificates still are). */
    private readonly signatures: SignatureCheck | null,
  ) {}

  /**
   * Throws EvidenceError for what is checked at once; the signature check is returned (null:
   * no fingerprint, or signatures not checked). `reduced`: the entry's version allows a
   * fingerprint stored reduced (audit/fingerprint.ts), whose claims are the entry's own fields.
   */
  check(entry: EvidenceFields, reduced = false): Promise<boolean> | null {
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
    const time = Date.parse(entry.time) / 1000;
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
