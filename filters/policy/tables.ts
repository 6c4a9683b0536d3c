// The compiled policy as the runtime sees it: one static i32 table `T`, one static byte
// blob `B` (both emitted by compiler/backend/emit.ts as data segments), a scratch area sized for
// the policy, and the two functions the generated code provides. All offsets below are in
// i32 units into T; -1 means "none". Layouts (written by compiler/backend/emit.ts, same names):
//   header   see H_* below
//   rule     [flags (1 deny, 2 any caller, 4 has when), idOff, idLen (JSON-escaped id in B), injections, when function]
//            injections: [count, (nameOff, nameLen, function) × count] or -1
//   atom     [rule, params (pairs of nameId, segment position), methods]
//            methods: -1 any; else a bit mask over method ids, or (H_METHOD_LISTS) a pairs list of (id, 0)
//   node     [literal children (hash → node), any-segment child node, exact items, rest items]
//   items    -1 none, -(x + 2) the single item x, else a list [count, x…]
//   hash     [size, slots × size (entry offset or -1), entries (keyOff, keyLen, value)…]; first slot keyHash × size / 2³², linear probing
//   pairs    [count, (a, b) × count]; strings are pairs of (off, len) in B
//   slot     [kind (0 header, 1 query, 2 claim), keyOff, keyLen] or [2, claim path strings, 0]
//   domain   [exact ID paths (hash → items of rules), pattern trie root]
// Header slots, strides, flags and slot kinds: compiler/backend/table-layout.ts, the one
// definition the emitter imports too.

import { sameBytes } from "../../runtime/bytes";
import { H_RULE_COUNT, H_SLOT_COUNT } from "../../compiler/backend/table-layout";

export * from "../../compiler/backend/table-layout";

export let T: usize = 0;
export let B: usize = 0;
export let ruleCount: i32 = 0;
export let slotCount: i32 = 0;
/** Per-rule and per-slot scratch, stamped with the request generation (never cleared). */
export let ruleSeen: usize = 0; // u32 generation
export let ruleAtom: usize = 0; // i32 atom that bound the rule's parameters
export let rulePrincipal: usize = 0; // u32 generation when the caller matched the rule's `from`
export let candidates: usize = 0; // i32 rule positions
export let slotGen: usize = 0; // u32 generation
export let slotValue: usize = 0; // usize V

/** Evaluates generated expression function `f`: a V (see expr.ts) as a pointer. */
export type ExprFn = (f: i32) => usize;
export let evalFn: ExprFn | null = null;

@inline export function t(i: i32): i32 { return load<i32>(T + (<usize>i << 2)); }
@inline export function b(off: i32): usize { return B + <usize>off; }

/** `scratch` holds SCRATCH_RULE_BYTES per rule and SCRATCH_SLOT_BYTES per slot (the emitter reserves them): the arrays below. */
export function install(table: usize, blob: usize, scratch: usize, fn: ExprFn): void {
  T = table;
  B = blob;
  ruleCount = t(H_RULE_COUNT);
  slotCount = t(H_SLOT_COUNT);
  const n = <usize>ruleCount << 2;
  ruleSeen = scratch;
  ruleAtom = ruleSeen + n;
  rulePrincipal = ruleAtom + n;
  candidates = rulePrincipal + n;
  slotGen = candidates + n;
  slotValue = slotGen + (<usize>slotCount << 2);
  evalFn = fn;
}

/** Looks a byte string up in a hash table: the entry's value offset, or -1. */
export function hashFind(table: i32, key: usize, keyLen: i32): i32 {
  if (table < 0) return -1;
  const size = <u32>t(table);
  let i = homeSlot(keyHash(key, keyLen), size);
  while (true) {
    const e = t(table + 1 + <i32>i);
    if (e < 0) return -1;
    if (t(e + 1) == keyLen && sameBytes(b(t(e)), key, keyLen)) return e + 2;
    if (++i == size) i = 0;
  }
}

/** A key's first slot: hash × size / 2³² (compiler/backend/emit.ts places keys the same way), a multiply where `%` would divide. */
@inline function homeSlot(hash: u32, size: u32): u32 { return <u32>((<u64>hash * size) >> 32); }

/**
 * The table key hash (compiler/backend/table-hash.ts computes the same at compile time): four bytes
 * per multiply, the last four overlapping when the length is not a multiple of four, then
 * MurmurHash3's finalizer so that the top bits homeSlot takes depend on every byte. A byte
 * at a time (FNV-1a) was most of a lookup's cost: a request hashes a dozen keys.
 */
export function keyHash(p: usize, n: i32): u32 {
  let h: u32 = 0x811c9dc5 ^ <u32>n;
  if (n >= 4) {
    for (let i = 0; i + 4 < n; i += 4) h = (h ^ load<u32>(p + <usize>i)) * 0x01000193;
    h = (h ^ load<u32>(p + <usize>(n - 4))) * 0x01000193;
  } else {
    let w: u32 = 0;
    for (let i = 0; i < n; i++) w |= <u32>load<u8>(p + <usize>i) << (<u32>i << 3);
    h = (h ^ w) * 0x01000193;
  }
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  return h ^ (h >> 16);
}
