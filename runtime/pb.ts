// Reading google.protobuf.Struct / Value / ListValue in place, without decoding into
// objects: a value is the (pointer, length) of its serialized `Value` message.
//   Struct    { map<string, Value> fields = 1; }   (entries: key = 1, value = 2)
//   Value     { null_value = 1; number_value = 2 (double); string_value = 3;
//               bool_value = 4; struct_value = 5; list_value = 6; }
//   ListValue { repeated Value values = 1; }
// Malformed input makes every reader report failure (the caller turns it into an error).
//
// A message is walked field by field with readField(), whose result is in module globals
// (no reader object per message: these run several times per fingerprinted request):
//   let p = ptr; const end = ptr + len;
//   while (p < end) { p = readField(p, end); if (!p) /* malformed */; … fieldNo, fieldWire … }
// A nested readField() overwrites the globals: take what is needed first.
import { bytesEqual } from "./bytes";

export const PB_NULL: i32 = 1;
export const PB_NUMBER: i32 = 2;
export const PB_STRING: i32 = 3;
export const PB_BOOL: i32 = 4;
export const PB_STRUCT: i32 = 5;
export const PB_LIST: i32 = 6;
export const PB_BAD: i32 = -1;

/** The field readField() read: number, wire type, and payload (a varint, or pointer and length). */
export let fieldNo: i32 = 0;
export let fieldWire: i32 = 0;
export let fieldVarint: u64 = 0;
export let fieldPtr: usize = 0;
export let fieldLen: i32 = 0;

/** Where the last varint() ended; 0 when it was malformed. */
let varintEnd: usize = 0;

/** A varint; a one-byte one (every tag and length under 128) without the loop. */
@inline function varint(p: usize, end: usize): u64 {
  if (p < end) {
    const b = load<u8>(p);
    if (b < 0x80) { varintEnd = p + 1; return b; }
  }
  return longVarint(p, end);
}

function longVarint(p: usize, end: usize): u64 {
  // Two bytes (lengths under 16384: a fingerprint's claims and the jwt_authn Struct holding
  // them run past 127 bytes) without the loop either.
  if (p + 1 < end) {
    const b1 = load<u8>(p + 1);
    if (b1 < 0x80) { varintEnd = p + 2; return <u64>(load<u8>(p) & 0x7f) | (<u64>b1 << 7); }
  }
  let v: u64 = 0;
  for (let shift: u64 = 0; shift < 64; shift += 7) {
    if (p >= end) break;
    const b = load<u8>(p++);
    v |= (<u64>(b & 0x7f)) << shift;
    if (!(b & 0x80)) { varintEnd = p; return v; }
  }
  varintEnd = 0;
  return 0;
}

/** Reads the field at `p` (< end) into the field globals: the position after it, or 0 when malformed. */
export function readField(p: usize, end: usize): usize {
  const tag = varint(p, end);
  if (!varintEnd) return 0;
  p = varintEnd;
  fieldNo = <i32>(tag >> 3);
  fieldWire = <i32>(tag & 7);
  if (fieldWire == 2) {
    const n = varint(p, end);
    if (!varintEnd) return 0;
    p = varintEnd;
    if (n > <u64>(end - p)) return 0;
    fieldPtr = p;
    fieldLen = <i32>n;
    return p + <usize>n;
  }
  if (fieldWire == 0) {
    fieldVarint = varint(p, end);
    return varintEnd;
  }
  const size: usize = fieldWire == 1 ? 8 : fieldWire == 5 ? 4 : 0;
  if (size == 0 || size > end - p) return 0;
  fieldPtr = p;
  fieldLen = <i32>size;
  return p + size;
}

/** The map entry readEntry() read: its key (length -1 when absent) and value (empty when absent). */
export let entryKeyPtr: usize = 0;
export let entryKeyLen: i32 = -1;
export let entryValPtr: usize = 0;
export let entryValLen: i32 = 0;

/** A map entry message (key = 1, value = 2, both length-delimited; the last of each wins); false when malformed. */
export function readEntry(ptr: usize, len: i32): bool {
  // What encoders write, key then value with one-byte lengths, is read in place; anything
  // else (other order, repeats, unknown fields, longer values) takes the general loop.
  if (len >= 4 && load<u8>(ptr) == 0x0a) {
    const kl = <i32>load<u8>(ptr + 1);
    if (kl < 0x80 && kl + 4 <= len && load<u8>(ptr + 2 + kl) == 0x12) {
      const vl = <i32>load<u8>(ptr + 3 + kl);
      if (vl < 0x80 && kl + vl + 4 == len) {
        entryKeyPtr = ptr + 2;
        entryKeyLen = kl;
        entryValPtr = ptr + 4 + kl;
        entryValLen = vl;
        return true;
      }
    }
  }
  entryKeyPtr = 0;
  entryKeyLen = -1;
  entryValPtr = 0;
  entryValLen = 0;
  let p = ptr;
  const end = ptr + len;
  while (p < end) {
    p = readField(p, end);
    if (!p) return false;
    if (fieldWire != 2) continue;
    if (fieldNo == 1) { entryKeyPtr = fieldPtr; entryKeyLen = fieldLen; }
    else if (fieldNo == 2) { entryValPtr = fieldPtr; entryValLen = fieldLen; }
  }
  return true;
}

/**
 * The next map entry (field 1) of a Struct or of Metadata's map at [p, end), read into the
 * entry globals; other fields are skipped. Returns the position after it, 0 when malformed;
 * at the end with no entry left it returns `end` with entryKeyLen -1 (as an entry without a
 * key, which no lookup matches). Walks a Struct's entries in place:
 *   let p = ptr; const end = ptr + len;
 *   while (p < end) { p = nextEntry(p, end); if (!p) return malformed; … entryKeyPtr, entryValPtr … }
 */
export function nextEntry(p: usize, end: usize): usize {
  while (p < end) {
    p = readField(p, end);
    if (!p) return 0;
    if (fieldNo == 1 && fieldWire == 2) return readEntry(fieldPtr, fieldLen) ? p : 0;
  }
  entryKeyPtr = 0;
  entryKeyLen = -1;
  entryValPtr = 0;
  entryValLen = 0;
  return p;
}

/** Result of a lookup: the Value message found. */
export let foundPtr: usize = 0;
export let foundLen: i32 = 0;

/** Finds `key` in a Struct (the last entry wins, as protobuf maps do). -1: malformed. */
export function structGet(ptr: usize, len: i32, key: usize, keyLen: i32): i32 {
  let found = 0;
  let p = ptr;
  const end = ptr + len;
  while (p < end) {
    p = nextEntry(p, end);
    if (!p) return -1;
    if (bytesEqual(entryKeyPtr, entryKeyLen, key, keyLen)) { found = 1; foundPtr = entryValPtr; foundLen = entryValLen; }
  }
  return found;
}

/** Number of entries of a Struct, or items of a ListValue (both use field 1); -1: malformed. */
export function countField1(ptr: usize, len: i32): i32 {
  let n = 0;
  let p = ptr;
  const end = ptr + len;
  while (p < end) {
    p = readField(p, end);
    if (!p) return -1;
    if (fieldNo == 1) n++;
  }
  return n;
}

/** Decoded scalar of the last valueKind() call. */
export let valNum: f64 = 0;
export let valBool: bool = false;
export let valPtr: usize = 0;
export let valLen: i32 = 0;

/** The kind of a Value message, with its payload in valNum/valBool/valPtr+valLen. */
export function valueKind(ptr: usize, len: i32): i32 {
  // A Value as encoders write it, one field: a number, or a string, Struct or list with a
  // one-byte length, read in place (every fingerprint claim is one); anything else loops.
  if (len >= 2) {
    const tag = <i32>load<u8>(ptr);
    if (tag == (PB_NUMBER << 3 | 1)) {
      if (len == 9) { valNum = load<f64>(ptr + 1); return PB_NUMBER; }
    } else if ((tag == (PB_STRING << 3 | 2) || tag == (PB_STRUCT << 3 | 2) || tag == (PB_LIST << 3 | 2)) && len - 2 < 0x80 && <i32>load<u8>(ptr + 1) == len - 2) {
      valPtr = ptr + 2;
      valLen = len - 2;
      return tag >> 3;
    }
  }
  let kind = PB_NULL; // an empty Value carries no kind: treat as null
  let p = ptr;
  const end = ptr + len;
  while (p < end) {
    p = readField(p, end);
    if (!p) return PB_BAD;
    kind = fieldNo;
    if (kind == PB_NUMBER && fieldWire == 1) valNum = load<f64>(fieldPtr);
    else if (kind == PB_BOOL && fieldWire == 0) valBool = fieldVarint != 0;
    else if ((kind == PB_STRING || kind == PB_STRUCT || kind == PB_LIST) && fieldWire == 2) { valPtr = fieldPtr; valLen = fieldLen; }
    else if (!(kind == PB_NULL && fieldWire == 0)) return PB_BAD;
  }
  return kind;
}
