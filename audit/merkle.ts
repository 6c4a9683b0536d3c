/**
 * The Merkle tree of RFC 9162 §2.1 over the log's entries: leaf hash SHA-256(0x00 ‖ entry),
 * node hash SHA-256(0x01 ‖ left ‖ right), the tree of n leaves split at the largest power
 * of two below n. Inclusion and consistency proofs are made and checked exactly as §2.1.3
 * and §2.1.4 describe, so any RFC 9162 verifier (CT, Trillian, Rekor clients) accepts ours.
 */
import { hash } from 'node:crypto';

export const HASH_BYTES = 32;

/**
 * A string entry is hashed as its UTF-8 bytes. Hashing is the log's hot path (every append,
 * every verified entry, about one node per leaf), so both hashes are one-shot `hash()` calls
 * over one buffer: a Hash object (createHash, update, digest) costs about as much again.
 */
export function leafHash(entry: Uint8Array | string): Buffer {
  if (typeof entry === 'string') return hash('sha256', `\0${entry}`, 'buffer') as Buffer;
  return hash('sha256', prefixed(0, entry), 'buffer') as Buffer;
}

/**
 * The leaf hash (base64, as an entry's `prev` spells it) of `bytes[start:end]`, hashed where
 * it lies: the byte before it (`start` ≥ 1) holds the 0x00 prefix meanwhile, and is put back.
 * The appender's path: a digest as a string costs less than half of one as a Buffer (a new
 * ArrayBuffer for 32 bytes, and the GC's work for it), and the entry is not copied.
 */
export function leafHashAt(bytes: Buffer, start: number, end: number): string {
  const before = bytes[start - 1]!;
  bytes[start - 1] = 0;
  const digest = hash('sha256', bytes.subarray(start - 1, end), 'base64') as string;
  bytes[start - 1] = before;
  return digest;
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  const bytes = prefixed(1, left, right.length);
  bytes.set(right, 1 + left.length);
  return hash('sha256', bytes, 'buffer') as Buffer;
}

/** Scratch space for the bytes to hash: one buffer, grown when needed, reused by every (synchronous) call. */
let scratch = Buffer.alloc(4096);
/** `prefix ‖ bytes` in the scratch buffer, with `extra` more bytes after `bytes` for the caller to fill. */
function prefixed(prefix: number, bytes: Uint8Array, extra = 0): Buffer {
  const length = 1 + bytes.length + extra;
  if (length > scratch.length) scratch = Buffer.alloc(Math.max(length, scratch.length * 2));
  scratch[0] = prefix;
  scratch.set(bytes, 1);
  return scratch.subarray(0, length);
}

/** The root of the empty tree: the hash of nothing. */
export const EMPTY_ROOT = hash('sha256', '', 'buffer') as Buffer;

/** The input of a node hash in `append`: 0x01 ‖ left ‖ right. */
const pairInput = Buffer.alloc(1 + 2 * HASH_BYTES, 1);

/** Hashes of equal length, one contiguous buffer (a million leaves are 32 MB, not a million objects). */
class HashList {
  #bytes = Buffer.alloc(HASH_BYTES * 1024);
  length = 0;
  /** A hash as bytes, or as a digest string in `encoding`. */
  push(hash: Uint8Array | string, encoding: 'base64' | 'binary' = 'base64'): void {
    this.#reserve(this.length + 1);
    if (typeof hash !== 'string') this.#bytes.set(hash, this.length * HASH_BYTES);
    else if (this.#bytes.write(hash, this.length * HASH_BYTES, HASH_BYTES, encoding) !== HASH_BYTES) throw new RangeError(`not a ${encoding} hash: ${hash}`);
    this.length++;
  }
  /** 0x01 ‖ the last two hashes, the input of the node above them, in a buffer reused by every call. */
  lastPair(): Buffer {
    this.#bytes.copy(pairInput, 1, (this.length - 2) * HASH_BYTES, this.length * HASH_BYTES);
    return pairInput;
  }
  /** Hashes one after another in `hashes`, as many pushes. */
  pushAll(hashes: Uint8Array): void {
    const length = this.length + hashes.length / HASH_BYTES;
    this.#reserve(length);
    this.#bytes.set(hashes, this.length * HASH_BYTES);
    this.length = length;
  }
  /** Room for `length` hashes: at least doubled when it grows, so appends cost amortised O(1). */
  #reserve(length: number): void {
    if (length * HASH_BYTES <= this.#bytes.length) return;
    const grown = Buffer.alloc(Math.max(length * HASH_BYTES, this.#bytes.length * 2));
    this.#bytes.copy(grown);
    this.#bytes = grown;
  }
  at(i: number): Buffer {
    return this.#bytes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
  }
  truncate(length: number): void {
    this.length = Math.min(this.length, length);
  }
}

/**
 * An append-only tree that keeps the hash of every complete, aligned subtree (level h holds
 * the subtrees of 2^h leaves), so the root of any prefix and any proof cost O(log n) hashes.
 */
export class MerkleTree {
  readonly #levels: HashList[] = [new HashList()];

  get size(): number {
    return this.#levels[0]!.length;
  }

  leaf(index: number): Buffer {
    return this.#levels[0]!.at(index);
  }

  /** Appends a leaf hash, as bytes or base64 (`leafHashAt`'s). */
  append(leaf: Uint8Array | string): void {
    this.#levels[0]!.push(leaf);
    this.#pairUp(0);
  }

  /**
   * Appends the 2^h leaves of a complete subtree at a multiple of 2^h leaves, with `nodes`,
   * its inner hashes as subtreeNodes gives them: what 2^h appends would compute, hashed
   * elsewhere (by verify's helper threads).
   */
  appendSubtree(leaves: Uint8Array, nodes: Uint8Array): void {
    const count = leaves.length / HASH_BYTES;
    const height = Math.log2(count);
    if (!Number.isInteger(height) || this.size % count !== 0 || nodes.length !== leaves.length - HASH_BYTES) throw new RangeError(`not a complete subtree at leaf ${this.size}`);
    this.#levels[0]!.pushAll(leaves);
    for (let h = 1, offset = 0; h <= height; offset += (count >> h) * HASH_BYTES, h++) {
      (this.#levels[h] ?? (this.#levels[h] = new HashList())).pushAll(nodes.subarray(offset, offset + (count >> h) * HASH_BYTES));
    }
    this.#pairUp(height);
  }

  /**
   * Each time a level from `h` up gains its second, fourth, … hash, the pair above it is
   * complete. Its digest comes as a string and goes straight into the level: no Buffer per node.
   */
  #pairUp(h: number): void {
    for (; this.#levels[h]!.length % 2 === 0; h++) {
      const level = this.#levels[h]!;
      const above = this.#levels[h + 1] ?? (this.#levels[h + 1] = new HashList());
      above.push(hash('sha256', level.lastPair(), 'binary') as string, 'binary');
    }
  }

  /** Forgets every leaf from `size` on (a write that did not reach the disk). */
  truncate(size: number): void {
    for (let h = 0; h < this.#levels.length; h++) this.#levels[h]!.truncate(Math.floor(size / 2 ** h));
  }

  /** MTH(D[0:n]). */
  root(n = this.size): Buffer {
    this.#check(n);
    return n === 0 ? EMPTY_ROOT : this.#range(0, n);
  }

  /** PATH(m, D[0:n]) (RFC 9162 §2.1.3.1): the audit path of leaf m in the tree of n leaves. */
  inclusionProof(m: number, n = this.size): Buffer[] {
    this.#check(n);
    if (!(Number.isInteger(m) && m >= 0 && m < n)) throw new RangeError(`leaf ${m} is not in a tree of ${n}`);
    const path: Buffer[] = [];
    const walk = (m: number, start: number, n: number) => {
      if (n === 1) return;
      const k = split(n);
      if (m < k) {
        walk(m, start, k);
        path.push(this.#range(start + k, start + n));
      } else {
        walk(m - k, start + k, n - k);
        path.push(this.#range(start, start + k));
      }
    };
    walk(m, 0, n);
    return path;
  }

  /** PROOF(m, D[0:n]) (RFC 9162 §2.1.4.1): that the tree of m leaves is a prefix of the tree of n. */
  consistencyProof(m: number, n = this.size): Buffer[] {
    this.#check(n);
    if (!(Number.isInteger(m) && m >= 0 && m <= n)) throw new RangeError(`no consistency proof from ${m} to ${n}`);
    const proof: Buffer[] = [];
    if (m === 0 || m === n) return proof;
    const sub = (m: number, start: number, n: number, whole: boolean) => {
      if (m === n) {
        if (!whole) proof.push(this.#range(start, start + n));
        return;
      }
      const k = split(n);
      if (m <= k) {
        sub(m, start, k, whole);
        proof.push(this.#range(start + k, start + n));
      } else {
        sub(m - k, start + k, n - k, false);
        proof.push(this.#range(start, start + k));
      }
    };
    sub(m, 0, n, true);
    return proof;
  }

  /** MTH(D[start:end]) for a range the RFC's split produces: `start` is aligned to the largest power of two that fits. */
  #range(start: number, end: number): Buffer {
    const n = end - start;
    if (n === 1) return this.leaf(start);
    if ((n & (n - 1)) === 0 && start % n === 0) {
      const h = Math.log2(n);
      const level = this.#levels[h];
      if (level && start / n < level.length) return level.at(start / n);
    }
    const k = split(n);
    return nodeHash(this.#range(start, start + k), this.#range(start + k, end));
  }

  #check(n: number): void {
    if (!(Number.isInteger(n) && n >= 0 && n <= this.size)) throw new RangeError(`tree has ${this.size} leaves, not ${n}`);
  }
}

/** The inner hashes of the complete subtree over `leaves` (2^h of them), level by level from the bottom. */
export function subtreeNodes(leaves: Uint8Array): Uint8Array {
  const nodes = new Uint8Array(Math.max(0, leaves.length - HASH_BYTES));
  let below = leaves;
  for (let offset = 0; below.length > HASH_BYTES; ) {
    const level = nodes.subarray(offset, offset + below.length / 2);
    for (let i = 0; i < level.length; i += HASH_BYTES) level.set(nodeHash(below.subarray(2 * i, 2 * i + HASH_BYTES), below.subarray(2 * i + HASH_BYTES, 2 * i + 2 * HASH_BYTES)), i);
    offset += level.length;
    below = level;
  }
  return nodes;
}

/** The largest power of two smaller than n (n ≥ 2). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** RFC 9162 §2.1.3.2: whether `path` proves leaf `index` of a tree of `size` leaves, with root `root`. */
export function verifyInclusion(leaf: Uint8Array, index: number, size: number, path: Uint8Array[], root: Uint8Array): boolean {
  if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size)) return false;
  let fn = index;
  let sn = size - 1;
  let r: Uint8Array = leaf;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      [fn, sn] = untilOdd(fn, sn);
    } else r = nodeHash(r, p);
    [fn, sn] = [Math.floor(fn / 2), Math.floor(sn / 2)];
  }
  return sn === 0 && Buffer.from(r).equals(root);
}

/** RFC 9162 §2.1.4.2: whether `proof` shows the tree (`size1`, `root1`) is a prefix of (`size2`, `root2`). */
export function verifyConsistency(size1: number, size2: number, proof: Uint8Array[], root1: Uint8Array, root2: Uint8Array): boolean {
  if (!(Number.isSafeInteger(size1) && Number.isSafeInteger(size2) && size1 >= 0 && size1 <= size2)) return false;
  if (size1 === size2) return proof.length === 0 && Buffer.from(root1).equals(root2);
  if (size1 === 0) return proof.length === 0; // the empty tree is a prefix of every tree
  const path = (size1 & (size1 - 1)) === 0 ? [root1, ...proof] : proof;
  if (path.length === 0) return false;
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Uint8Array = path[0]!;
  let sr: Uint8Array = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      [fn, sn] = untilOdd(fn, sn);
    } else sr = nodeHash(sr, c);
    [fn, sn] = [Math.floor(fn / 2), Math.floor(sn / 2)];
  }
  return sn === 0 && Buffer.from(fr).equals(root1) && Buffer.from(sr).equals(root2);
}

/** RFC 9162's "right-shift both fn and sn equally until either LSB(fn) is set or fn is 0". */
function untilOdd(fn: number, sn: number): [number, number] {
  while (fn % 2 === 0 && fn !== 0) [fn, sn] = [Math.floor(fn / 2), Math.floor(sn / 2)];
  return [fn, sn];
}
