/**
 * Proofs a third party checks without trusting the agent (docs/audit.md, "Proofs"):
 * an inclusion proof ties one entry to a signed checkpoint, a consistency proof ties an
 * older checkpoint to a newer one. Hashes are base64, as in the checkpoint itself.
 */
import { readFileSync } from 'node:fs';
import { leafHash, verifyInclusion, type MerkleTree } from './merkle.ts';
import path from 'node:path';
import { listSegments } from './files.ts';
import { parseCheckpoint } from './checkpoint.ts';

export interface InclusionProof {
  /** The entry line exactly as stored; its leaf hash is SHA-256(0x00 ‖ these UTF-8 bytes). */
  entry: string;
  index: number;
  leaf_hash: string;
  tree_size: number;
  root_hash: string;
  /** RFC 9162 §2.1.3 audit path, leaf to root. */
  proof: string[];
  /** The signed checkpoint for `tree_size` and the chain of the SVID that signed it. */
  checkpoint: string;
  chain: string;
}

export interface ConsistencyProof {
  from_size: number;
  to_size: number;
  from_root: string;
  to_root: string;
  /** RFC 9162 §2.1.4 consistency proof. */
  proof: string[];
}

const b64 = (list: Buffer[]) => list.map((h) => h.toString('base64'));

export function inclusionProof(tree: MerkleTree, entry: string, index: number, checkpoint: { text: string; chainPem: string }): InclusionProof {
  const size = parseCheckpoint(checkpoint.text).size;
  return {
    entry,
    index,
    leaf_hash: leafHash(Buffer.from(entry)).toString('base64'),
    tree_size: size,
    root_hash: tree.root(size).toString('base64'),
    proof: b64(tree.inclusionProof(index, size)),
    checkpoint: checkpoint.text,
    chain: checkpoint.chainPem,
  };
}

export function consistencyProof(tree: MerkleTree, from: number, to: number): ConsistencyProof {
  return { from_size: from, to_size: to, from_root: tree.root(from).toString('base64'), to_root: tree.root(to).toString('base64'), proof: b64(tree.consistencyProof(from, to)) };
}

/** Whether `entry` (a stored line) is leaf `index` of the tree a verified checkpoint (`head`) commits to, by its audit path (base64). */
export function provesInclusion(entry: string, index: number, proof: string[], head: { size: number; root: Buffer }): boolean {
  return verifyInclusion(leafHash(Buffer.from(entry)), index, head.size, proof.map((h) => Buffer.from(h, 'base64')), head.root);
}

/** Entries `from` ≤ seq < `to` as stored lines, reading only the segments that hold them. */
export function readEntries(dir: string, from: number, to: number): string[] {
  const out: string[] = [];
  const segments = listSegments(dir);
  for (const [i, file] of segments.entries()) {
    const first = firstSeq(file);
    const next = i + 1 < segments.length ? firstSeq(segments[i + 1]!) : Infinity;
    if (next <= from || first >= to) continue;
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.pop(); // after the last newline: nothing, or a torn write
    for (let seq = Math.max(first, from); seq < Math.min(first + lines.length, to); seq++) out.push(lines[seq - first]!);
  }
  return out;
}

const firstSeq = (segment: string) => Number(path.basename(segment, '.jsonl'));
