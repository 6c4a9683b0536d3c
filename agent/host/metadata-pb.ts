/**
 * Protobuf wire encoding of the `metadata` attribute, envoy.config.core.v3.Metadata
 * { map<string, google.protobuf.Struct> filter_metadata = 1 }, with Struct, Value and
 * ListValue, written straight into the module's memory.
 *
 * This runs on every request (the fingerprint claims are new each time), so it allocates
 * nothing: pass 1 (`metadataSize`) records the size of every nested message in pre-order,
 * the host allocates exactly that much in the module, and pass 2 (`writeMetadata`) writes
 * the bytes, replaying the recorded sizes for the length prefixes. Strings are assumed
 * ASCII (length without a scan, written in the one pass that copies them); a string that
 * is not makes pass 2 answer false, and the host runs both passes again with exact UTF-8
 * lengths. protobufjs' generic writer, or encoding nested messages apart and copying
 * them, cost several microseconds.
 *
 * Own properties are walked with for-in and hasOwn, which V8 runs from the object's enum
 * cache: about three times faster than Object.keys and a keyed load per property.
 *
 * Values: strings and numbers (bigint as a double, as JSON has one number type), booleans,
 * null, arrays (ListValue) and plain objects (Struct); bytes as a string value. Anything
 * else object-shaped (an attribute wrapper) becomes an empty Struct.
 */
import { utf8Length, writeAscii, writeUtf8 } from './pairs.ts';
import type { PropertyValue } from './properties.ts';

type Fields = Record<string, PropertyValue>;

/** Nested message sizes from pass 1, in the order pass 2 writes them. */
const sizes: number[] = [];
let cursor = 0;
/** Pass 1 measured UTF-8 lengths (not string lengths): pass 2 writes UTF-8. */
let exact = false;
/** Pass 2 met a string that is not ASCII while pass 1 assumed ASCII. */
let notAscii = false;

/** Pass 1: the encoded size of Metadata with these filter_metadata Structs; see `exact` above. */
export function metadataSize(filterMetadata: Fields, exactLengths: boolean): number {
  exact = exactLengths;
  sizes.length = 0;
  let n = 0;
  for (const name in filterMetadata) if (Object.hasOwn(filterMetadata, name)) n += field(entrySize(name, structSize(filterMetadata[name])));
  return n;
}

/**
 * Pass 2: writes what metadataSize measured (it must be the last size computed) at
 * out[at]; false when an ASCII guess was wrong (the bytes are then unusable).
 */
export function writeMetadata(filterMetadata: Fields, out: Uint8Array, at: number): boolean {
  buf = out;
  pos = at;
  cursor = 0;
  notAscii = false;
  for (const name in filterMetadata) {
    if (!Object.hasOwn(filterMetadata, name)) continue;
    const struct = sizes[cursor];
    tag(1, 2);
    varint(entrySize(name, struct));
    string(1, name);
    writeStruct(2, filterMetadata[name]);
  }
  buf = EMPTY;
  return !notAscii;
}

/** Tag, length and body of a length-delimited field whose body is `n` bytes. */
const field = (n: number): number => 1 + varintLength(n) + n;
/** A map entry { string key = 1; message value = 2 }. */
const entrySize = (key: string, value: number): number => field(textLength(key)) + field(value);
const textLength = (s: string): number => (exact ? utf8Length(s) : s.length);

/** A plain object (a JSON object), not a list, bytes or one of the host's attribute classes. */
function isFields(v: PropertyValue | undefined): v is Fields {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function structSize(v: PropertyValue): number {
  const slot = sizes.push(0) - 1;
  let n = 0;
  if (isFields(v)) for (const key in v) if (Object.hasOwn(v, key)) n += field(entrySize(key, valueSize(v[key])));
  sizes[slot] = n;
  return n;
}

function listSize(items: PropertyValue[]): number {
  const slot = sizes.push(0) - 1;
  let n = 0;
  for (const item of items) n += field(valueSize(item));
  sizes[slot] = n;
  return n;
}

/** Size of a Value message. */
function valueSize(v: PropertyValue | undefined): number {
  switch (typeof v) {
    case 'string':
      return field(textLength(v));
    case 'number':
    case 'bigint':
      return 9;
    case 'boolean':
      return 2;
  }
  if (v === null || v === undefined) return 2;
  if (v instanceof Uint8Array) return field(v.length);
  return field(Array.isArray(v) ? listSize(v) : structSize(v));
}

// ---- pass 2 ---------------------------------------------------------------------------

const EMPTY = new Uint8Array(0);
let buf: Uint8Array = EMPTY;
let pos = 0;
const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);

function writeStruct(fieldNumber: number, v: PropertyValue): void {
  tag(fieldNumber, 2);
  varint(sizes[cursor++]);
  if (!isFields(v)) return;
  for (const key in v) {
    if (!Object.hasOwn(v, key)) continue;
    const value = v[key];
    const vs = measured(value);
    tag(1, 2);
    varint(entrySize(key, vs));
    string(1, key);
    writeValue(2, value, vs);
  }
}

/** A Value's size in pass 2: scalars are measured again (cheap), nested sizes come from pass 1 in order. */
function measured(v: PropertyValue | undefined): number {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array) ? field(sizes[cursor]) : valueSize(v);
}

/** A Value as field `fieldNumber` (2 in a map entry, 1 in a ListValue) whose body is `size` bytes. */
function writeValue(fieldNumber: number, v: PropertyValue | undefined, size: number): void {
  tag(fieldNumber, 2);
  varint(size);
  writeBody(v);
}

function writeBody(v: PropertyValue | undefined): void {
  switch (typeof v) {
    case 'string':
      return string(3, v);
    case 'number':
    case 'bigint':
      tag(2, 1);
      F64[0] = Number(v); // little-endian, as every platform Node runs on
      buf.set(F64_BYTES, pos);
      pos += 8;
      return;
    case 'boolean':
      tag(4, 0);
      buf[pos++] = v ? 1 : 0;
      return;
  }
  if (v === null || v === undefined) {
    tag(1, 0);
    buf[pos++] = 0;
  } else if (v instanceof Uint8Array) {
    tag(3, 2);
    varint(v.length);
    buf.set(v, pos);
    pos += v.length;
  } else if (Array.isArray(v)) {
    tag(6, 2);
    varint(sizes[cursor++]);
    for (const item of v) writeValue(1, item, measured(item));
  } else writeStruct(5, v);
}

function tag(fieldNumber: number, wire: number): void {
  buf[pos++] = (fieldNumber << 3) | wire;
}

function varint(n: number): void {
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[pos++] = n;
}

function string(fieldNumber: number, s: string): void {
  tag(fieldNumber, 2);
  if (exact) {
    varint(utf8Length(s));
    pos += writeUtf8(s, buf, pos);
    return;
  }
  varint(s.length);
  if (writeAscii(s, buf, pos) < 0) notAscii = true;
  pos += s.length;
}

const varintLength = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);
