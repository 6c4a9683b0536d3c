/**
 * `palisade audit verify`: everything a log claims, checked offline with the trust bundle
 * alone. Every entry in order (numbering, the hash chain, the caller's fingerprint against
 * the caller's certificate at the time it was made and against the entry it sits in),
 * every checkpoint (format, signature by the log's own agent with a chain valid at its
 * time, its root over the entries, consistency with the one before), and optionally a
 * checkpoint kept elsewhere, which catches truncation and rollback. Stops at the first
 * failure, naming the entry or checkpoint and why.
 */
import type { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { MerkleTree, leafHash, verifyConsistency } from './merkle.ts';
import { parseCheckpoint, checkSignature, originIdentity, type Checkpoint } from './checkpoint.ts';
import { CheckedChain, spiffeIdOfCert, loadBundle } from './chain.ts';
import { ORIGIN, chainFileOf, checkpointFile, listCheckpoints, listSegments } from './files.ts';
import { HelperError, VerifyHelpers } from './helpers.ts';
import type { RunResult } from './entry-runs.ts';
import { Chunks, RUN_LINES, segmentRuns, type SegmentRun } from './segment-runs.ts';

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

/** Runs sent ahead of the one whose leaves the tree takes next. */
const RUNS_AHEAD = 16;

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
  const helpers = await VerifyHelpers.start({ dir, bundlePem, service: originIdentity(origin), signatures: options.signatures !== false });
  try {
    const checkpoints = new Checkpoints(dir, origin, bundle);
    const tree = await verifyEntries(dir, helpers, () => checkpoints.checkNext());
    return verifyCheckpoints(checkpoints, tree, trusted);
  } catch (err) {
    if (err instanceof HelperError) throw new VerifyError(err.message);
    throw err;
  } finally {
    await helpers.close();
  }
}

/**
 * Every entry in order, into the tree; throws VerifyError at the first that fails. The
 * helpers check runs of lines side by side; their answers are taken in order, so the
 * failure named is the earliest, exactly as if one thread had checked entry after entry.
 * `meanwhile`: work of the main thread's own, done a piece before each answer is awaited.
 */
async function verifyEntries(dir: string, helpers: VerifyHelpers, meanwhile: () => void): Promise<MerkleTree> {
  const tree = new MerkleTree();
  const chunks = new Chunks();
  const runs: { run: SegmentRun; checked: Promise<RunResult> }[] = [];
  /** Takes the oldest run's answer into the tree. */
  const take = async () => {
    const { run, checked } = runs.shift()!;
    meanwhile();
    const { leaves, nodes, failure } = await checked;
    if (failure !== undefined) throw new VerifyError(failure);
    chunks.checked(run);
    if (nodes) tree.appendSubtree(leaves, nodes);
    else for (let i = 0; i < leaves.length; i += 32) tree.append(leaves.subarray(i, i + 32));
  };
  const segments = listSegments(dir);
  /** The base64 leaf hash of the last entry line read: what the next one's `prev` must say. */
  let prev = '';
  let entries = 0;
  for (const [segment, file] of segments.entries()) {
    const name = path.relative(dir, file);
    let line = 1;
    const runsOf = segmentRuns(file, entries, chunks);
    let next = runsOf.next();
    for (; !next.done; next = runsOf.next()) {
      const { chunk, offset, start, end, count } = next.value;
      const { bytes } = chunk;
      const subtree = count === RUN_LINES && entries % RUN_LINES === 0;
      const checked = helpers.check({ bytes, offset, start, end, count, first: entries, subtree, line, prev, segments, segment, name });
      checked.catch(() => {}); // taken in order below; those after a failure are abandoned, and refused as the helpers close
      runs.push({ run: next.value, checked });
      prev = leafHash(bytes.subarray(bytes.lastIndexOf(10, end - 2) + 1, end - 1)).toString('base64');
      [line, entries] = [line + count, entries + count];
      if (runs.length >= RUNS_AHEAD) await take();
    }
    if (next.value.torn) {
      while (runs.length > 0) await take();
      throw new VerifyError(`${name}:${line}: entry ${tree.size} is cut short (no newline): a torn write the agent repairs on start, or truncation`);
    }
  }
  while (runs.length > 0) await take();
  return tree;
}

function verifyCheckpoints(checkpoints: Checkpoints, tree: MerkleTree, trusted?: TrustedCheckpoint): Verified {
  let previous: Checkpoint | null = null;
  const { dir, files } = checkpoints;
  for (const [i, file] of files.entries()) {
    const name = path.relative(dir, file);
    const cp = checkpoints.signed(i);
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
    const cp = checkpoints.check(trusted.text, trusted.chainPem, `trusted checkpoint ${trusted.name}`);
    matchTree(cp, tree, `trusted checkpoint ${trusted.name}`);
  }
  return { entries: tree.size, checkpoints: files.length, origin: checkpoints.origin, unsigned: tree.size - (previous?.size ?? 0), tree };
}

/**
 * The log's checkpoints, each checked on its own (format, origin, its chain at its time,
 * signature) while the helpers check the entries, one between two of their answers. What
 * is wrong with one is told only where verify has always told it: after every entry and
 * every checkpoint before it.
 */
class Checkpoints {
  readonly files: string[];
  readonly #checked: (Checkpoint | VerifyError)[] = [];
  /** Chains by their PEM: an SVID's checkpoints all store the same one. */
  readonly #chains = new Map<string, CheckedChain>();

  constructor(
    readonly dir: string,
    readonly origin: string,
    private readonly bundle: X509Certificate[],
  ) {
    this.files = listCheckpoints(dir);
  }

  /** Checks the next checkpoint file, if one is left. */
  checkNext(): void {
    const file = this.files[this.#checked.length];
    if (file === undefined) return;
    const name = path.relative(this.dir, file);
    try {
      this.#checked.push(this.check(readFileSync(file, 'utf8'), chainPem(file, name), name));
    } catch (err) {
      if (!(err instanceof VerifyError)) throw err;
      this.#checked.push(err);
    }
  }

  /** Checkpoint file `i`, checked; throws VerifyError with what is wrong with it. */
  signed(i: number): Checkpoint {
    while (this.#checked.length <= i) this.checkNext();
    const checked = this.#checked[i]!;
    if (checked instanceof VerifyError) throw checked;
    return checked;
  }

  check(text: string, chain: string, name: string): Checkpoint {
    try {
      const cp = parseCheckpoint(text);
      if (cp.origin !== this.origin) throw new VerifyError(`${name}: belongs to log ${cp.origin}, not ${this.origin}`);
      let checked = this.#chains.get(chain);
      if (!checked) this.#chains.set(chain, (checked = new CheckedChain(chain, this.bundle)));
      const leaf = checked.at(new Date(cp.time));
      checkSignature(cp, leaf, spiffeIdOfCert(leaf));
      return cp;
    } catch (err) {
      if (err instanceof VerifyError) throw err;
      throw new VerifyError(`${name}: ${(err as Error).message}`);
    }
  }
}

function chainPem(file: string, name: string): string {
  const chain = chainFileOf(file);
  if (!existsSync(chain)) throw new VerifyError(`${name}: no certificate chain beside it (${path.basename(chain)})`);
  return readFileSync(chain, 'utf8');
}

function matchTree(cp: Checkpoint, tree: MerkleTree, name: string): void {
  if (cp.size > tree.size) throw new VerifyError(`${name}: commits to ${cp.size} entries but the log holds ${tree.size}: entries ${tree.size}–${cp.size - 1} were removed (truncated or rolled back)`);
  if (!cp.root.equals(tree.root(cp.size))) throw new VerifyError(`${name}: its root hash does not match entries 0–${cp.size - 1}: the entries were rewritten after it was signed`);
}
