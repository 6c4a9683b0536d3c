// Reading google.protobuf.Struct / Value / ListValue in place, without decoding into
// objects: a value is the (pointer, length) of its serialized `Value` message.
//   Struct    { map<string, Value> fields = 1; }   (entries: key = 1, value = 2)
//   Value     { null_value = 1; number_value = 2 (double); string_value = 3;
//               bool_value = 4; struct_value = 5; list_value = 6; }
//   ListValue { repeated Value values = 1; }
// Malformed input makes every reader report failure (the caller turns it into an error).
import { bytesEqual } from "./bytes";

export const PB_NULL: i32 = 1;
export const PB_NUMBER: i32 = 2;
export const PB_STRING: i32 = 3;
export const PB_BOOL: i32 = 4;
export const PB_STRUCT: i32 = 5;
export const PB_LIST: i32 = 6;
export const PB_BAD: i32 = -1;

/** A cursor over one message. After next(): field, wire type, and the payload. */
export class PbReader {
  pos: usize;
  end: usize;
  field: i32 = 0;
  wire: i32 = 0;
  varint: u64 = 0;
  ptr: usize = 0; // length-delimited payload
  len: i32 = 0;
  bad: bool = false;
  constructor(ptr: usize, len: i32) {
    this.pos = ptr;
    this.end = ptr + len;
  }
  /** A varint; a one-byte one (every tag and length under 128) without the loop. */
  @inline private readVarint(): u64 {
    const p = this.pos;
    if (p < this.end) {
      const b = load<u8>(p);
      if (b < 0x80) { this.pos = p + 1; return b; }
    }
    return this.longVarint();
  }
  private longVarint(): u64 {
    let v: u64 = 0;
    for (let shift: u64 = 0; shift < 64; shift += 7) {
      if (this.pos >= this.end) { this.bad = true; return 0; }
      const b = load<u8>(this.pos++);
      v |= (<u64>(b & 0x7f)) << shift;
      if (!(b & 0x80)) return v;
    }
    this.bad = true;
    return 0;
  }
  /** Advances to the next field; false at the end or on malformed input. */
  next(): bool {
    if (this.bad || this.pos >= this.end) return false;
    const tag = this.readVarint();
    this.field = <i32>(tag >> 3);
    this.wire = <i32>(tag & 7);
    if (this.wire == 0) this.varint = this.readVarint();
    else if (this.wire == 1) this.skip(8);
    else if (this.wire == 5) this.skip(4);
    else if (this.wire == 2) {
      const n = this.readVarint();
      if (n > <u64>(this.end - this.pos)) this.bad = true;
      else { this.ptr = this.pos; this.len = <i32>n; this.pos += <usize>n; }
    } else this.bad = true;
    return !this.bad;
  }
  private skip(n: usize): void {
    if (this.pos + n > this.end) { this.bad = true; return; }
    this.ptr = this.pos;
    this.len = <i32>n;
    this.pos += n;
  }
}

/** Result of a lookup: the Value message found. */
export let foundPtr: usize = 0;
export let foundLen: i32 = 0;

/** Finds `key` in a Struct (the last entry wins, as protobuf maps do). -1: malformed. */
export function structGet(ptr: usize, len: i32, key: usize, keyLen: i32): i32 {
  const r = new PbReader(ptr, len);
  let found = 0;
  while (r.next()) {
    if (r.field != 1 || r.wire != 2) continue;
    const e = new PbReader(r.ptr, r.len);
    let match = false;
    let vp: usize = 0;
    let vl = 0;
    while (e.next()) {
      if (e.field == 1 && e.wire == 2) match = bytesEqual(e.ptr, e.len, key, keyLen);
      else if (e.field == 2 && e.wire == 2) { vp = e.ptr; vl = e.len; }
    }
    if (e.bad) return -1;
    if (match) { found = 1; foundPtr = vp; foundLen = vl; }
  }
  return r.bad ? -1 : found;
}

/** Number of entries of a Struct, or items of a ListValue (both use field 1); -1: malformed. */
export function countField1(ptr: usize, len: i32): i32 {
  const r = new PbReader(ptr, len);
  let n = 0;
  while (r.next()) if (r.field == 1) n++;
  return r.bad ? -1 : n;
}

/** Decoded scalar of the last valueKind() call. */
export let valNum: f64 = 0;
export let valBool: bool = false;
export let valPtr: usize = 0;
export let valLen: i32 = 0;

/** The kind of a Value message, with its payload in valNum/valBool/valPtr+valLen. */
export function valueKind(ptr: usize, len: i32): i32 {
  const r = new PbReader(ptr, len);
  let kind = PB_NULL; // an empty Value carries no kind: treat as null
  while (r.next()) {
    kind = r.field;
    if (kind == PB_NUMBER && r.wire == 1) valNum = load<f64>(r.ptr);
    else if (kind == PB_BOOL && r.wire == 0) valBool = r.varint != 0;
    else if ((kind == PB_STRING || kind == PB_STRUCT || kind == PB_LIST) && r.wire == 2) { valPtr = r.ptr; valLen = r.len; }
    else if (!(kind == PB_NULL && r.wire == 0)) return PB_BAD;
  }
  return r.bad ? PB_BAD : kind;
}
