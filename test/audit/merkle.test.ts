/**
 * The tree against a reference written straight from RFC 9162's recursive definitions
 * (MTH, PATH, PROOF), for random sizes: same roots, same proofs, and proofs that verify
 * only for the leaf, size and root they were made for.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { MerkleTree, leafHash, subtreeNodes, verifyInclusion, verifyConsistency } from '../../audit/merkle.ts';

const sha = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
const k = (n: number) => 2 ** Math.ceil(Math.log2(n) - 1);
function mth(d: Buffer[]): Buffer {
  if (d.length === 0) return sha();
  if (d.length === 1) return sha(Buffer.from([0]), d[0]!);
  return sha(Buffer.from([1]), mth(d.slice(0, k(d.length))), mth(d.slice(k(d.length))));
}
function path(m: number, d: Buffer[]): Buffer[] {
  if (d.length <= 1) return [];
  const s = k(d.length);
  return m < s ? [...path(m, d.slice(0, s)), mth(d.slice(s))] : [...path(m - s, d.slice(s)), mth(d.slice(0, s))];
}
function subproof(m: number, d: Buffer[], b: boolean): Buffer[] {
  if (m === d.length) return b ? [] : [mth(d)];
  const s = k(d.length);
  return m <= s ? [...subproof(m, d.slice(0, s), b), mth(d.slice(s))] : [...subproof(m - s, d.slice(s), false), mth(d.slice(0, s))];
}
const entries = (n: number) => Array.from({ length: n }, (_, i) => Buffer.from(`entry ${i}`));
function treeOf(d: Buffer[]): MerkleTree {
  const tree = new MerkleTree();
  for (const e of d) tree.append(leafHash(e));
  return tree;
}
const hex = (list: Buffer[]) => list.map((b) => b.toString('hex'));

test('roots and inclusion proofs match the reference for random sizes', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 300 }), fc.nat(), (n, pick) => {
      const d = entries(n);
      const tree = treeOf(d);
      const m = pick % n;
      assert.is(tree.root().toString('hex'), mth(d).toString('hex'));
      const proof = tree.inclusionProof(m);
      assert.equal(hex(proof), hex(path(m, d)));
      assert.ok(verifyInclusion(leafHash(d[m]!), m, n, proof, tree.root()));
      // The same proof for another leaf, size or root does not verify.
      if (n > 1) assert.not.ok(verifyInclusion(leafHash(d[(m + 1) % n]!), m, n, proof, tree.root()));
      if (n > 1) assert.not.ok(verifyInclusion(leafHash(d[m]!), m, n, [sha(Buffer.from('x')), ...proof.slice(1)], tree.root()));
      assert.not.ok(verifyInclusion(leafHash(d[m]!), m, n, proof, sha(Buffer.from('other'))));
    }),
    { numRuns: 150 },
  );
});

test('consistency proofs match the reference and verify only between the right trees', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 300 }), fc.nat(), (n, pick) => {
      const d = entries(n);
      const tree = treeOf(d);
      const m = 1 + (pick % n);
      const proof = tree.consistencyProof(m, n);
      assert.equal(hex(proof), hex(m === n ? [] : subproof(m, d, true)));
      assert.ok(verifyConsistency(m, n, proof, tree.root(m), tree.root(n)));
      assert.is(tree.root(m).toString('hex'), mth(d.slice(0, m)).toString('hex'));
      // A rewritten prefix: same sizes, other first tree.
      const forged = treeOf([Buffer.from('forged'), ...d.slice(1)]);
      if (m < n) assert.not.ok(verifyConsistency(m, n, proof, forged.root(m), tree.root(n)));
    }),
    { numRuns: 150 },
  );
});

test('a tree cut back forgets the cut leaves and grows again the same way', () => {
  const d = entries(37);
  const tree = treeOf(d);
  tree.truncate(20);
  assert.is(tree.size, 20);
  assert.is(tree.root().toString('hex'), mth(d.slice(0, 20)).toString('hex'));
  for (const e of d.slice(20)) tree.append(leafHash(e));
  assert.is(tree.root().toString('hex'), mth(d).toString('hex'));
  assert.is(tree.root(0).toString('hex'), sha().toString('hex'));
});

test('complete subtrees hashed apart (as verify\'s helpers do) build the tree leaf-by-leaf appends build', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 9 }), (heights, tail) => {
      const tree = new MerkleTree();
      const d: Buffer[] = [];
      for (const h of heights) {
        // A subtree of 2^h leaves fits at the current size only if the size is a multiple of 2^h: pad with single leaves.
        while (tree.size % 2 ** h !== 0) {
          d.push(Buffer.from(`entry ${d.length}`));
          tree.append(leafHash(d.at(-1)!));
        }
        const block = Array.from({ length: 2 ** h }, (_, i) => Buffer.from(`entry ${d.length + i}`));
        d.push(...block);
        const leaves = Buffer.concat(block.map((e) => leafHash(e)));
        tree.appendSubtree(leaves, subtreeNodes(leaves));
      }
      for (let i = 0; i < tail; i++) {
        d.push(Buffer.from(`entry ${d.length}`));
        tree.append(leafHash(d.at(-1)!));
      }
      const reference = treeOf(d);
      assert.is(tree.size, d.length);
      for (let n = 1; n <= d.length; n++) assert.is(tree.root(n).toString('hex'), reference.root(n).toString('hex'));
      assert.equal(hex(tree.consistencyProof(1, d.length)), hex(reference.consistencyProof(1, d.length)));
      assert.equal(hex(tree.inclusionProof(d.length - 1)), hex(reference.inclusionProof(d.length - 1)));
    }),
    { numRuns: 200 },
  );
  assert.throws(() => new MerkleTree().appendSubtree(Buffer.alloc(96), Buffer.alloc(64)), /not a complete subtree/);
});

test.run();
