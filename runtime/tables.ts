// The compiled policy as the runtime sees it: one static i32 table `T`, one static byte
// blob `B` (both emitted by compiler/emit.ts as data segments), a scratch area sized for
// the policy, and the two functions the generated code provides. All offsets below are in
// i32 units into T; -1 means "none". Layouts (written by compiler/emit.ts, same names):
//   header   see H_* below
//   rule     [effect (0 allow, 1 deny), fromAny, idOff, idLen (JSON-escaped id in B), hasWhen, injected header names (strings)]
//   hash     [mask, (keyOff, keyLen, value) × (mask + 1)]   keyOff -1: empty; FNV-1a, linear probing
//   bucket   [trie root node, any-path list]
//   node     [literal hash → node, any-segment child node, exact list, rest list]
//   list     [count, items…]
//   atom     [rule, params list of (nameId, position) pairs]
//   strings  [count, (off, len) × count]
//   slot     [kind (0 header, 1 query, 2 claim), keyOff, keyLen] or [2, claim path strings, 0]

export const H_RULE_COUNT = 0;
export const H_RULES = 1;
export const H_METHODS = 2;
export const H_ANY_BUCKET = 3;
export const H_ATOMS = 4;
export const H_PRINCIPAL_EXACT = 5;
export const H_PRINCIPAL_DOMAINS = 6;
export const H_STRIP = 7;
export const H_SLOT_COUNT = 8;
export const H_SLOTS = 9;
export const H_PARAM_NAMES = 10;
export const H_DRY_RUN = 11;
export const RULE_STRIDE = 6;
export const ATOM_STRIDE = 2;

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

/** Evaluates rule `r`'s `when`: a V (bool, or anything else = error). */
export type WhenFn = (r: i32) => usize;
/** Evaluates injection `i` of rule `r` into injectPtr/injectLen; false on error. */
export type InjectFn = (r: i32, i: i32) => bool;
export let evalWhen: WhenFn | null = null;
export let evalInject: InjectFn | null = null;

@inline export function t(i: i32): i32 { return load<i32>(T + (<usize>i << 2)); }
@inline export function b(off: i32): usize { return B + <usize>off; }

export function scratchSize(rules: i32, slots: i32): i32 { return rules * 16 + slots * 8; }

export function install(table: usize, blob: usize, scratch: usize, when: WhenFn, inject: InjectFn): void {
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
  evalWhen = when;
  evalInject = inject;
}

/** Looks a byte string up in a hash table; the value, or -1. */
export function hashGet(table: i32, key: usize, keyLen: i32, hash: u32): i32 {
  if (table < 0) return -1;
  const mask = <u32>t(table);
  let i = hash & mask;
  while (true) {
    const e = table + 1 + <i32>i * 3;
    const off = t(e);
    if (off < 0) return -1;
    if (t(e + 1) == keyLen && memory.compare(b(off), key, keyLen) == 0) return t(e + 2);
    i = (i + 1) & mask;
  }
}
