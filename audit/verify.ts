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
import { verifyChainAt, spiffeIdOfCert, loadBundle } from './chain.ts';
import { ORIGIN, chainFileOf, checkpointFile, listCheckpoints, listSegments } from './files.ts';
import { HelperError, VerifyHelpers } from './helpers.ts';
import type { RunResult } from './entry-runs.ts';
import { Chunks, segmentRuns, type SegmentRun } from './segment-runs.ts';

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
    const tree = await verifyEntries(dir, helpers);
    return verifyCheckpoints(dir, origin, bundle, tree, trusted);
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
 */
async function verifyEntries(dir: string, helpers: VerifyHelpers): Promise<MerkleTree> {
  const tree = new MerkleTree();
  const chunks = new Chunks();
  const runs: { run: SegmentRun; checked: Promise<RunResult> }[] = [];
  /** Takes the oldest run's answer into the tree. */
  const take = async () => {
    const { run, checked } = runs.shift()!;
    const { leaves, failure } = await checked;
    if (failure !== undefined) throw new VerifyError(failure);
    chunks.checked(run);
    for (let i = 0; i < leaves.length; i += 32) tree.append(leaves.subarray(i, i + 32));
  };
  const segments = listSegments(dir);
  /** The base64 leaf hash of the last entry line read: what the next one's `prev` must say. */
  let prev = '';
  let entries = 0;
  for (const [segment, file] of segments.entries()) {
    const name = path.relative(dir, file);
    let line = 1;
    const runsOf = segmentRuns(file, chunks);
    let next = runsOf.next();
    for (; !next.done; next = runsOf.next()) {
      const { chunk, offset, start, end, count } = next.value;
      const { bytes } = chunk;
      const checked = helpers.check({ bytes, offset, start, end, count, first: entries, line, prev, segments, segment, name });
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
