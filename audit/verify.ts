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
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { FINGERPRINT_TYP, htuOf, type FingerprintClaims } from '../spiffe/fingerprint.ts';
import { MerkleTree, leafHash, verifyConsistency } from './merkle.ts';
import { parseCheckpoint, checkSignature, originIdentity, type Checkpoint } from './checkpoint.ts';
import { verifyChainAt, spiffeIdOfCert, loadBundle, ChainError } from './chain.ts';
import { ORIGIN, certFile, chainFileOf, checkpointFile, listCheckpoints, storedLines } from './files.ts';
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

/** Fingerprint signatures checked at once in libuv's threadpool; a failure is still reported at its own entry. */
const SIGNATURES_IN_FLIGHT = 512;

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
  const service = originIdentity(origin);
  const evidence = new FingerprintEvidence(storedCertificate(dir), bundle, options.signatures ?? true);
  const tree = new MerkleTree();
  /** Signature checks under way, oldest first; `at` names the entry, built only when it failed. */
  const signatures: { at: () => string; ok: Promise<boolean> }[] = [];
  /** Waits for the signatures of earlier entries, so the first failure named is the earliest. */
  const settle = async () => {
    for (const { at, ok } of signatures.splice(0)) {
      if (!(await ok)) throw new VerifyError(`${at()}: fingerprint signature does not verify with the caller's certificate`);
    }
  };
  const fail = async (message: string): Promise<never> => {
    await settle();
    throw new VerifyError(message);
  };
  const lines = storedLines(dir);
  let pending: IteratorResult<ReturnType<typeof storedLines> extends Generator<infer T> ? T : never> = lines.next();
  /** The base64 leaf hash of the entry before: what its `prev` must say. */
  let prev = '';
  /** What is wrong with line `n`, if anything; its fingerprint signature joins `signatures`. */
  const checkEntry = (line: typeof pending.value, n: number): string | undefined => {
    if ('torn' in line) return `${line.where}: entry ${n} is cut short (no newline): a torn write the agent repairs on start, or truncation`;
    const at = () => `entry ${n} (${line.where})`;
    let entry: AuditEntry;
    try {
      entry = JSON.parse(line.text);
    } catch {
      return `${at()}: not valid JSON: the entry was altered`;
    }
    if ((entry?.v !== 1 && entry?.v !== 2) || !Number.isSafeInteger(entry.seq)) return `${at()}: not an audit entry`;
    if (entry.seq !== n) {
      const next = !pending.done && !('torn' in pending.value) ? seqOf(pending.value.text) : undefined;
      if (entry.seq === n + 1 && next === n) return `${at()}: entries ${n} and ${n + 1} are swapped`;
      if (entry.seq < n) return `${at()}: entry ${entry.seq} appears again where entry ${n} belongs: an entry was inserted`;
      return `${at()}: found entry ${entry.seq} where entry ${n} belongs: entries ${n}–${entry.seq - 1} were deleted`;
    }
    if (entry.prev !== prev) return `entry ${n - 1}: altered (entry ${n}, ${line.where}, recorded another hash for it)`;
    if (entry.service !== service) return `${at()}: service ${entry.service} is not the log's agent ${service}`;
    try {
      const ok = evidence.check(entry, entry.v === 2);
      if (ok) signatures.push({ at, ok });
    } catch (err) {
      // The entry is the forger's input: anything in it that cannot be checked (a field of
      // another type, a certificate that does not parse) fails that entry, with its position.
      return `${at()}: ${err instanceof EvidenceError ? err.message : `malformed evidence (${(err as Error).message})`}`;
    }
    return undefined;
  };
  while (!pending.done) {
    const line = pending.value;
    pending = lines.next();
    const n = tree.size;
    const problem = checkEntry(line, n);
    if (problem !== undefined || 'torn' in line) return fail(problem!);
    if (signatures.length >= SIGNATURES_IN_FLIGHT) await settle();
    const leaf = leafHash(line.bytes);
    tree.append(leaf);
    prev = leaf.toString('base64');
  }
  await settle();

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

function seqOf(text: string): number | undefined {
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

/** What an entry is checked against, read once per caller certificate (X509Certificate's getters parse on every call). */
interface CallerCert {
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
    private readonly signatures: boolean,
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
    return new Promise<boolean>((resolve) =>
      verify('sha256', Buffer.from(signed), { key: cert.key, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64url'), (err, valid) => resolve(!err && valid)),
    );
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
      caller = { key: cert.publicKey, spiffeId: spiffeIdOfCert(cert), serial: cert.serialNumber.toLowerCase(), notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) };
      this.#certs.set(id, caller);
    }
    if (!(atMs >= caller.notBefore && atMs <= caller.notAfter)) throw new EvidenceError(`caller certificate was not valid when the fingerprint was made (${new Date(atMs).toISOString()})`);
    return caller;
  }
}
