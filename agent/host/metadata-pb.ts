/**
 * Protobuf wire encoding of the `metadata` attribute, envoy.config.core.v3.Metadata
 * { map<string, google.protobuf.Struct> filter_metadata = 1 }, with Struct, Value and
 * ListValue.
 *
 * This runs on every request (the fingerprint claims are new each time), so it is one pass
 * over the values into a reused scratch buffer, which the host then copies into the module
 * with one memcpy. A nested message's length prefix is not known before its body is
 * written: one byte is reserved for it, and in the rare case the body reaches 128 bytes
 * the body is moved up to make room for the longer varint (a native copyWithin). Strings
 * are written as exact UTF-8 in the same pass. A two-pass encoder (sizes first, then the
 * bytes straight into the module) walked every object twice and cost about twice as much;
 * protobufjs' generic writer costs several times more.
 *
 * Own properties are walked with for-in and hasOwn, which V8 runs from the object's enum
 * cache: about three times faster than Object.keys and a keyed load per property.
 *
 * Values: strings and numbers (bigint as a double, as JSON has one number type), booleans,
 * null, arrays (ListValue) and plain objects (Struct); bytes as a string value. Anything
 * else object-shaped (an attribute wrapper) becomes an empty Struct.
 */
import { writeUtf8 } from './pairs.ts';
import type { PropertyValue } from './properties.ts';

type Fields = Record<string, PropertyValue>;

let buf = new Uint8Array(1024);
let pos = 0;
const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);

/**
 * The encoded Metadata with these filter_metadata Structs: a view of the scratch buffer,
 * valid until the next call (copy it to keep it).
 */
export function encodeMetadata(filterMetadata: Fields): Uint8Array {
  pos = 0;
  writeEntries(filterMetadata, false);
  return buf.subarray(0, pos);
}

/** A plain object (a JSON object), not a list, bytes or one of the host's attribute classes. */
function isFields(v: PropertyValue | undefined): v is Fields {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** The fields of a Struct: its map entries with Value messages. */
function writeStruct(v: PropertyValue): void {
  if (isFields(v)) writeEntries(v, true);
}

/**
 * Map entries as repeated field 1, { string key = 1; message value = 2 }, one per own
 * property: Values in a Struct (`values`), Structs in Metadata's map. A flag rather than a
 * writer function keeps the calls direct on this per-request path.
 */
function writeEntries(fields: Fields, values: boolean): void {
  for (const key in fields) {
    if (!Object.hasOwn(fields, key)) continue;
    tag(1, 2);
    const entry = open();
    string(1, key);
    tag(2, 2);
    const value = open();
    if (values) writeValue(fields[key]);
    else writeStruct(fields[key]);
    close(value);
    close(entry);
  }
}

/** The body of a Value message. */
function writeValue(v: PropertyValue | undefined): void {
  switch (typeof v) {
    case 'string':
      return string(3, v);
    case 'number':
    case 'bigint':
      room(9);
      tag(2, 1);
      F64[0] = Number(v); // little-endian, as every platform Node runs on
      buf.set(F64_BYTES, pos);
      pos += 8;
      return;
    case 'boolean':
      room(2);
      tag(4, 0);
      buf[pos++] = v ? 1 : 0;
      return;
  }
  if (v === null || v === undefined) {
    room(2);
    tag(1, 0);
    buf[pos++] = 0;
  } else if (v instanceof Uint8Array) {
    room(v.length + 6);
    tag(3, 2);
    varint(v.length);
    buf.set(v, pos);
    pos += v.length;
  } else if (Array.isArray(v)) {
    tag(6, 2);
    const list = open();
    for (const item of v) {
      tag(1, 2);
      const value = open();
      writeValue(item);
      close(value);
    }
    close(list);
  } else {
    tag(5, 2);
    const struct = open();
    writeStruct(v);
    close(struct);
  }
}

/** Makes room for `n` more bytes (the scratch buffer only ever grows). */
function room(n: number): void {
  if (pos + n <= buf.length) return;
  const grown = new Uint8Array(Math.max(buf.length * 2, pos + n));
  grown.set(buf.subarray(0, pos));
  buf = grown;
}

/** Reserves the one-byte length prefix of a nested message; close() fills it in. */
function open(): number {
  room(1);
  return pos++;
}

/** Sets the length prefix reserved at `at`, moving the body up when its varint needs more than one byte. */
function close(at: number): void {
  const n = pos - at - 1;
  if (n < 0x80) {
    buf[at] = n;
    return;
  }
  const extra = varintLength(n) - 1;
  room(extra);
  buf.copyWithin(at + 1 + extra, at + 1, pos);
  pos += extra;
  const end = pos;
  pos = at;
  varint(n);
  pos = end;
}

/** Tags are one byte: every field number here is below 16. */
function tag(fieldNumber: number, wire: number): void {
  room(1);
  buf[pos++] = (fieldNumber << 3) | wire;
}

function varint(n: number): void {
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[pos++] = n;
}

/** A string field: UTF-8 takes at most 3 bytes per UTF-16 unit, so a short string's length fits one byte. */
function string(fieldNumber: number, s: string): void {
  tag(fieldNumber, 2);
  room(1 + 3 * s.length);
  if (3 * s.length < 0x80) {
    const n = writeUtf8(s, buf, pos + 1);
    buf[pos] = n;
    pos += 1 + n;
    return;
  }
  const at = open();
  pos += writeUtf8(s, buf, pos);
  close(at);
}

const varintLength = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);
