// Values and operators of `when`/`inject` expressions, as the generated code calls them.
// A value is a V allocated in the request arena. Errors are values (kind K_ERR) and
// propagate through every operator; the generated code short-circuits && and || itself.
import { bytesCompare, bytesEqual, bytesIndexOf, sameBytes } from "../../runtime/bytes";
import { segSize, segPtr, normLen, normPtr } from "../../runtime/path";
import { PB_BOOL, PB_LIST, PB_NULL, PB_NUMBER, PB_STRING, PB_STRUCT, countField1, fieldLen, fieldNo, fieldPtr, fieldWire, foundLen as pbFoundLen, foundPtr as pbFoundPtr, readField, structGet, valBool, valLen, valNum, valPtr, valueKind } from "../../runtime/pb";
import { claims, claimsLen, claimsPtr, foundLen, foundPtr, hasHeader, header, headerCount, hostLen, hostPtr, methodLen, methodPtr, principalLen, principalPtr, query, queryCount } from "../../runtime/request";
import { ATOM_STRIDE, H_ATOMS, H_PARAM_NAMES, H_SLOTS, SLOT_HEADER, SLOT_QUERY, SLOT_STRIDE, b, slotGen, slotValue, t } from "./tables";

export const K_ERR = 0;
export const K_NULL = 1;
export const K_BOOL = 2;
export const K_NUM = 3;
export const K_STR = 4;
export const K_LIST = 5;
export const K_MAP = 6;
// list representations
const L_ARR = 0;
const L_PB = 1; // ListValue bytes
const L_SCOPES = 2; // space-separated string
// map representations
const M_PB = 0; // Struct bytes
const M_HEADERS = 1;
const M_QUERY = 2;
const M_PARAMS = 3;

export class V {
  kind: i32 = K_ERR;
  rep: i32 = 0;
  ptr: usize = 0;
  len: i32 = 0;
  num: f64 = 0;
  bool: bool = false;
  items: Array<V> | null = null;
}

/** Request generation and the rule being evaluated (its bound route atom), set by the engine. */
export let generation: u32 = 0;
export let currentAtom: i32 = -1;
export function setGeneration(g: u32): void { generation = g; }
export function setAtom(a: i32): void { currentAtom = a; }

// ---- constructors
export function ERR(): V { return new V(); }
export function BOOL(x: bool): V { const v = new V(); v.kind = K_BOOL; v.bool = x; return v; }
export function NUM(x: f64): V { const v = new V(); v.kind = K_NUM; v.num = x; return v; }
export function STR(ptr: usize, len: i32): V { const v = new V(); v.kind = K_STR; v.ptr = ptr; v.len = len; return v; }
/** A string constant in the policy blob. */
export function S(off: i32, len: i32): V { return STR(b(off), len); }
export function LIST(items: Array<V>): V { const v = new V(); v.kind = K_LIST; v.rep = L_ARR; v.items = items; return v; }
function rep(kind: i32, r: i32, ptr: usize, len: i32): V { const v = new V(); v.kind = kind; v.rep = r; v.ptr = ptr; v.len = len; return v; }

// ---- attributes
export function method(): V { return STR(methodPtr, methodLen); }
export function path(): V { return STR(normPtr, normLen); }
export function host(): V { return STR(hostPtr, hostLen); }
export function principal(): V { return STR(principalPtr, principalLen); }
export function headersMap(): V { return rep(K_MAP, M_HEADERS, 0, 0); }
export function queryMap(): V { return rep(K_MAP, M_QUERY, 0, 0); }
export function paramsMap(): V { return rep(K_MAP, M_PARAMS, 0, 0); }

const SUB = memory.data<u8>([115, 117, 98]); // "sub"
const SCOPE = memory.data<u8>([115, 99, 111, 112, 101]); // "scope"
const SCP = memory.data<u8>([115, 99, 112]); // "scp"

/** `user.sub`: the `sub` claim, a string; an error without identity context or claim. */
export function userSub(): V {
  if (!claims() || structGet(claimsPtr, claimsLen, SUB, 3) != 1) return ERR();
  const v = fromValue(pbFoundPtr, pbFoundLen);
  return v.kind == K_STR ? v : ERR();
}

/** `user.scopes`: `scope` split on spaces, else the `scp` list, else []. */
export function userScopes(): V {
  if (!claims()) return ERR();
  let found = structGet(claimsPtr, claimsLen, SCOPE, 5);
  if (found == 1) {
    const v = fromValue(pbFoundPtr, pbFoundLen);
    return v.kind == K_STR ? rep(K_LIST, L_SCOPES, v.ptr, v.len) : ERR();
  }
  if (found == 0) found = structGet(claimsPtr, claimsLen, SCP, 3);
  if (found == 1) {
    const v = fromValue(pbFoundPtr, pbFoundLen);
    return v.kind == K_LIST ? v : ERR();
  }
  return found == 0 ? rep(K_LIST, L_SCOPES, 0, 0) : ERR();
}

/** A path parameter of the current rule's matched template ('' if the template has none). */
export function param(nameId: i32): V {
  const pos = paramPos(nameId);
  return pos < 0 ? STR(0, 0) : STR(segPtr(pos), segSize(pos));
}

function paramList(): i32 { return currentAtom < 0 ? -1 : t(t(H_ATOMS) + currentAtom * ATOM_STRIDE + 1); }

function paramPos(nameId: i32): i32 {
  const list = paramList();
  if (list < 0) return -1;
  for (let i = 0, n = t(list); i < n; i++) if (t(list + 1 + i * 2) == nameId) return t(list + 2 + i * 2);
  return -1;
}

function paramByName(ptr: usize, len: i32): bool {
  const list = paramList();
  if (list < 0) return false;
  const names = t(H_PARAM_NAMES);
  for (let i = 0, n = t(list); i < n; i++) {
    const id = t(list + 1 + i * 2);
    if (bytesEqual(b(t(names + 1 + id * 2)), t(names + 2 + id * 2), ptr, len)) return true;
  }
  return false;
}

/**
 * A slot: a header, query parameter or claim, read once per request and then reused.
 * Absent headers and query parameters are ''; a missing claim is an error.
 */
export function slot(i: i32): V {
  const at = <usize>i << 2;
  if (load<u32>(slotGen + at) == generation) return changetype<V>(<usize>load<u32>(slotValue + at));
  const v = readSlot(t(H_SLOTS) + i * SLOT_STRIDE);
  store<u32>(slotGen + at, generation);
  store<u32>(slotValue + at, <u32>changetype<usize>(v));
  return v;
}

function readSlot(s: i32): V {
  const kind = t(s);
  if (kind == SLOT_HEADER) return header(b(t(s + 1)), t(s + 2)) ? STR(foundPtr, foundLen) : STR(0, 0);
  if (kind == SLOT_QUERY) return query(b(t(s + 1)), t(s + 2)) ? STR(foundPtr, foundLen) : STR(0, 0);
  if (!claims()) return ERR();
  // walk the claim path through nested Structs
  const keys = t(s + 1);
  let ptr = claimsPtr;
  let len = claimsLen;
  let v = rep(K_MAP, M_PB, ptr, len);
  for (let k = 0, n = t(keys); k < n; k++) {
    if (v.kind != K_MAP) return ERR();
    if (structGet(v.ptr, v.len, b(t(keys + 1 + k * 2)), t(keys + 2 + k * 2)) != 1) return ERR();
    v = fromValue(pbFoundPtr, pbFoundLen);
  }
  return v;
}

/** A google.protobuf.Value as a V. */
function fromValue(ptr: usize, len: i32): V {
  const kind = valueKind(ptr, len);
  if (kind == PB_STRING) return STR(valPtr, valLen);
  if (kind == PB_NUMBER) return NUM(valNum);
  if (kind == PB_BOOL) return BOOL(valBool);
  if (kind == PB_STRUCT) return rep(K_MAP, M_PB, valPtr, valLen);
  if (kind == PB_LIST) return rep(K_LIST, L_PB, valPtr, valLen);
  if (kind == PB_NULL) { const v = new V(); v.kind = K_NULL; return v; }
  return ERR();
}

// ---- operators
export function isTrue(v: V): bool { return v.kind == K_BOOL && v.bool; }
export function isFalse(v: V): bool { return v.kind == K_BOOL && !v.bool; }

export function not(v: V): V { return v.kind == K_BOOL ? BOOL(!v.bool) : ERR(); }

/** Operand of && / || that is not false/true: its value as a bool, or an error. */
export function asBool(v: V): V { return v.kind == K_BOOL ? v : ERR(); }

export const EQ = 0; export const NE = 1; export const LT = 2; export const LE = 3; export const GT = 4; export const GE = 5;

/** Comparison; operands of different kinds (a dyn claim of the wrong type) are an error. */
export function cmp(op: i32, a: V, c: V): V {
  if (a.kind != c.kind) return ERR();
  let d: i32;
  if (a.kind == K_STR) d = bytesCompare(a.ptr, a.len, c.ptr, c.len);
  else if (a.kind == K_NUM) {
    if (a.num != a.num || c.num != c.num) return BOOL(op == NE); // NaN: only != holds
    d = a.num < c.num ? -1 : a.num > c.num ? 1 : 0;
  } else if (a.kind == K_BOOL && op <= NE) d = a.bool == c.bool ? 0 : 1;
  else return ERR();
  if (op == EQ) return BOOL(d == 0);
  if (op == NE) return BOOL(d != 0);
  if (op == LT) return BOOL(d < 0);
  if (op == LE) return BOOL(d <= 0);
  if (op == GT) return BOOL(d > 0);
  return BOOL(d >= 0);
}

/** Same kind and equal (scalars only); used by membership. */
function same(a: V, c: V): bool {
  if (a.kind != c.kind) return false;
  if (a.kind == K_STR) return bytesEqual(a.ptr, a.len, c.ptr, c.len);
  if (a.kind == K_NUM) return a.num == c.num;
  if (a.kind == K_BOOL) return a.bool == c.bool;
  return false;
}

/** `elem in list` (membership) or `key in map` (presence). */
export function inOp(e: V, c: V): V {
  if (e.kind == K_ERR) return e;
  if (c.kind == K_LIST) {
    if (c.rep == L_ARR) {
      const items = c.items!;
      for (let i = 0; i < items.length; i++) if (same(e, items[i])) return BOOL(true);
      return BOOL(false);
    }
    if (c.rep == L_SCOPES) return BOOL(e.kind == K_STR && scopeIndex(c, e) >= 0);
    let p = c.ptr;
    const end = c.ptr + c.len;
    while (p < end) {
      p = readField(p, end);
      if (!p) return ERR();
      if (fieldNo == 1 && fieldWire == 2 && same(e, fromValue(fieldPtr, fieldLen))) return BOOL(true);
    }
    return BOOL(false);
  }
  if (c.kind != K_MAP || e.kind != K_STR) return ERR();
  if (c.rep == M_HEADERS) return BOOL(hasHeader(e.ptr, e.len));
  if (c.rep == M_QUERY) return BOOL(query(e.ptr, e.len));
  if (c.rep == M_PARAMS) return BOOL(paramByName(e.ptr, e.len));
  const found = structGet(c.ptr, c.len, e.ptr, e.len);
  return found < 0 ? ERR() : BOOL(found == 1);
}

/** Walks the space-separated tokens of a scope string: index of `e`, or -1; with e null, counts. */
function scopeIndex(c: V, e: V | null): i32 {
  let n = 0;
  let s = 0;
  while (s < c.len) {
    while (s < c.len && load<u8>(c.ptr + s) == 32) s++;
    if (s >= c.len) break;
    let end = s;
    while (end < c.len && load<u8>(c.ptr + end) != 32) end++;
    if (e && bytesEqual(c.ptr + s, end - s, e.ptr, e.len)) return n;
    n++;
    s = end;
  }
  return e ? -1 : n;
}

export const STARTS_WITH = 0; export const ENDS_WITH = 1; export const CONTAINS = 2;

export function call(fn: i32, s: V, x: V): V {
  if (s.kind != K_STR || x.kind != K_STR) return ERR();
  if (x.len > s.len) return BOOL(false);
  if (fn == STARTS_WITH) return BOOL(sameBytes(s.ptr, x.ptr, x.len));
  if (fn == ENDS_WITH) return BOOL(sameBytes(s.ptr + s.len - x.len, x.ptr, x.len));
  return BOOL(bytesIndexOf(s.ptr, s.len, x.ptr, x.len) >= 0);
}

/** `size(x)`: bytes of a string, items of a list, entries of a map. */
export function size(v: V): V {
  if (v.kind == K_STR) return NUM(v.len);
  if (v.kind == K_LIST) {
    if (v.rep == L_ARR) return NUM(v.items!.length);
    if (v.rep == L_SCOPES) return NUM(scopeIndex(v, null));
    const n = countField1(v.ptr, v.len);
    return n < 0 ? ERR() : NUM(n);
  }
  if (v.kind == K_MAP) {
    if (v.rep == M_HEADERS) return NUM(headerCount);
    if (v.rep == M_QUERY) return NUM(queryCount());
    if (v.rep == M_PARAMS) { const l = paramList(); return NUM(l < 0 ? 0 : t(l)); }
    const n = countField1(v.ptr, v.len);
    return n < 0 ? ERR() : NUM(n);
  }
  return ERR();
}
