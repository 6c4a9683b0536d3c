// The decision for one request (see compiler/ir/ir.ts for the procedure). Only rules whose
// route bucket, path trie and principal index match are ever evaluated, so the cost
// follows the number of matching rules, not the size of the policy.
import { isTrue, setAtom, setGeneration, V, K_BOOL, K_STR } from "./expr";
import { segCount, segLen, segStart } from "../../runtime/path";
import { callerLocal, callerPathAt } from "./principal";
import { methodLen, methodPtr, principalLen, principalPtr } from "../../runtime/request";
import {
  ATOM_STRIDE, H_ANY_PATH, H_ATOMS, H_METHODS, H_METHOD_LISTS, H_PRINCIPALS, H_RULES, H_TRIE, RULE_ANY_CALLER, RULE_DENY,
  RULE_HAS_WHEN, RULE_STRIDE, candidates, evalFn, hashFind, ruleAtom, rulePrincipal, ruleSeen, t,
} from "./tables";

export const NONE = 0; // no rule applies: default deny
export const ALLOW = 1;
export const DENY = 2;

/** The outcome of decide(): which rule (position), and whether a `when` error made a deny apply. */
export let decidedRule: i32 = -1;
export let decidedByError: bool = false;
/** The applying allow rule's injected values: (ptr, len) pairs, in the rule's order. */
export let injected: usize = 0;

let gen: u32 = 0;
let candidateCount = 0;

@inline export function ruleField(r: i32, f: i32): i32 { return t(t(H_RULES) + r * RULE_STRIDE + f); }
@inline function ruleHas(r: i32, flag: i32): bool { return (ruleField(r, 0) & flag) != 0; }

/** The request method's id in the policy's method table, and its mask bit (0: a method no route names). */
let methodId = -1;
let methodBit = 0;

// Hit modes of the trie walk.
const ROUTES = 0;
const PRINCIPALS = 1;

export function decide(): i32 {
  if (++gen == 0) gen = 1; // generation 0 is what fresh scratch memory holds
  setGeneration(gen);
  candidateCount = 0;
  decidedRule = -1;
  decidedByError = false;
  matchPrincipal();
  const m = hashFind(t(H_METHODS), methodPtr, methodLen);
  methodId = m < 0 ? -1 : t(m);
  methodBit = methodId >= 0 && methodId < 31 ? 1 << methodId : 0;
  hitItems(t(H_ANY_PATH), ROUTES);
  if (t(H_TRIE) >= 0) walk(t(H_TRIE), segStart, segLen, segCount, 0, ROUTES);
  sortCandidates();

  for (let i = 0; i < candidateCount; i++) {
    const r = load<i32>(candidates + (<usize>i << 2));
    if (!ruleHas(r, RULE_DENY)) continue;
    if (!ruleHas(r, RULE_HAS_WHEN)) { decidedRule = r; return DENY; }
    setAtom(load<i32>(ruleAtom + (<usize>r << 2)));
    const v = changetype<V>(evalFn!(ruleField(r, 4)));
    if (v.kind == K_BOOL && !v.bool) continue;
    decidedRule = r;
    decidedByError = v.kind != K_BOOL; // fail closed: an error makes a deny rule apply
    return DENY;
  }
  for (let i = 0; i < candidateCount; i++) {
    const r = load<i32>(candidates + (<usize>i << 2));
    if (ruleHas(r, RULE_DENY)) continue;
    setAtom(load<i32>(ruleAtom + (<usize>r << 2)));
    if (ruleHas(r, RULE_HAS_WHEN) && !isTrue(changetype<V>(evalFn!(ruleField(r, 4))))) continue;
    if (!injectAll(r)) continue; // an injection that cannot be evaluated: the rule does not apply
    decidedRule = r;
    return ALLOW;
  }
  return NONE;
}

/** Evaluates the rule's injections into `injected`; false if one is not a string (or an error). */
function injectAll(r: i32): bool {
  const list = ruleField(r, 3);
  if (list < 0) return true;
  const n = t(list);
  injected = heap.alloc(<usize>n << 3);
  for (let i = 0; i < n; i++) {
    const v = changetype<V>(evalFn!(t(list + 3 + i * 3)));
    if (v.kind != K_STR) return false;
    store<u32>(injected + (<usize>i << 3), <u32>v.ptr);
    store<i32>(injected + (<usize>i << 3) + 4, v.len);
  }
  return true;
}

/** Depth-first over a trie: literal child by hash, then the any-segment child (non-empty segments only). */
function walk(node: i32, starts: usize, lens: usize, count: i32, i: i32, mode: i32): void {
  if (i == count) {
    hitItems(t(node + 2), mode);
    return;
  }
  // `**` matches further segments only when none is empty: a trailing slash (the one empty
  // segment a normalized path can have) is matched by no template, as the reference says.
  if (mode == PRINCIPALS || load<i32>(lens + (<usize>(count - 1) << 2)) > 0) hitItems(t(node + 3), mode);
  const p = <usize>load<i32>(starts + (<usize>i << 2));
  const n = load<i32>(lens + (<usize>i << 2));
  const lit = hashFind(t(node), p, n);
  if (lit >= 0) walk(t(lit), starts, lens, count, i + 1, mode);
  const any = t(node + 1);
  if (any >= 0 && n > 0) walk(any, starts, lens, count, i + 1, mode);
}

/** Items: -1 none, -(x + 2) the single item x, else a list. */
function hitItems(items: i32, mode: i32): void {
  if (items == -1) return;
  if (items < -1) { hit(-items - 2, mode); return; }
  for (let k = 0, n = t(items); k < n; k++) hit(t(items + 1 + k), mode);
}

function hit(id: i32, mode: i32): void {
  if (mode == PRINCIPALS) store<u32>(rulePrincipal + (<usize>id << 2), gen);
  else hitAtom(id);
}

/** Does the atom accept the request's method? */
function acceptsMethod(methods: i32): bool {
  if (methods == -1) return true;
  if (!t(H_METHOD_LISTS)) return (methods & methodBit) != 0;
  for (let k = 0, n = t(methods); k < n; k++) if (t(methods + 1 + k * 2) == methodId) return true;
  return false;
}

function hitAtom(atom: i32): void {
  const a = t(H_ATOMS) + atom * ATOM_STRIDE;
  if (!acceptsMethod(t(a + 2))) return;
  const r = t(a);
  const at = <usize>r << 2;
  // A rule without `from` admits callers of the policy's own trust domain only; federated callers need a `from`.
  if (ruleHas(r, RULE_ANY_CALLER) ? !callerLocal : load<u32>(rulePrincipal + at) != gen) return; // caller not in `from`
  if (load<u32>(ruleSeen + at) != gen) {
    store<u32>(ruleSeen + at, gen);
    store<i32>(ruleAtom + at, atom);
    store<i32>(candidates + (<usize>candidateCount << 2), r);
    candidateCount++;
  } else if (atom < load<i32>(ruleAtom + at)) store<i32>(ruleAtom + at, atom); // first route binds the parameters
}

/** Stamps every rule whose `from` matches the caller (checked by checkCaller): exact IDs by hash, patterns by trie, per trust domain. */
function matchPrincipal(): void {
  const p = principalPtr;
  const len = principalLen;
  let s = callerPathAt;
  const d = hashFind(t(H_PRINCIPALS), p + 9, s - 9);
  if (d < 0) return;
  const domain = t(d);
  const exact = hashFind(t(domain), p + s, len - s);
  if (exact >= 0) hitItems(t(exact), PRINCIPALS);
  // segments of the ID's path
  const max = <usize>(len - s + 1);
  const starts = heap.alloc(max << 2);
  const lens = heap.alloc(max << 2);
  let count = 0;
  while (s < len) {
    const b = s + 1;
    let e = b;
    while (e < len && load<u8>(p + e) != 47) e++;
    store<i32>(starts + (<usize>count << 2), <i32>(p + b));
    store<i32>(lens + (<usize>count << 2), e - b);
    count++;
    s = e;
  }
  walk(t(domain + 1), starts, lens, count, 0, PRINCIPALS);
}

/** Candidates in policy order (insertion sort: the list is short). */
function sortCandidates(): void {
  for (let i = 1; i < candidateCount; i++) {
    const x = load<i32>(candidates + (<usize>i << 2));
    let j = i - 1;
    while (j >= 0 && load<i32>(candidates + (<usize>j << 2)) > x) {
      store<i32>(candidates + (<usize>(j + 1) << 2), load<i32>(candidates + (<usize>j << 2)));
      j--;
    }
    store<i32>(candidates + (<usize>(j + 1) << 2), x);
  }
}
