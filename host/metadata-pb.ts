/**
 * Protobuf wire encoding of the `metadata` attribute, envoy.config.core.v3.Metadata
 * { map<string, google.protobuf.Struct> filter_metadata = 1 }, with Struct, Value and
 * ListValue.
 *
 * This runs on every request (the fingerprint claims are new each time), so it is one pass
 * over the values into a reused scratch buffer, which the host then copies into the module
 * with one memcpy. The writers keep the position in locals and pass it along (a module
 * variable would be loaded and stored around every call), and check room once per field.
 *
 * A nested message's length prefix is not known before its body is written: it gets as
 * many bytes as the same container (counted in the order they are opened) needed in the
 * previous call, one at first, and when that guess is wrong the body moves (a native
 * copyWithin) to make the prefix exactly as long as its varint. Requests carry metadata of
 * the same shape, so after the first call nothing moves; before, the fingerprint's Struct
 * (over 127 bytes) moved its whole body at each of its five enclosing levels. Most entries
 * are an ASCII key with a short ASCII string (claims): their lengths are known up front
 * and they are written straight through, without the container bookkeeping.
 *
 * Strings are exact UTF-8, written by pairs.ts's writers (the same ones the header maps
 * use): in one pass while they are ASCII, exactly otherwise (lone surrogates become U+FFFD).
 *
 * Own properties are walked with for-in and hasOwnProperty.call, which V8 answers from the
 * for-in enum cache (Object.hasOwn costs about 25 ns per key there, Object.keys more).
 *
 * Values: strings and numbers (bigint as a double, as JSON has one number type), booleans,
 * null, arrays (ListValue) and plain objects (Struct); bytes as a string value. Anything
 * else object-shaped (an attribute wrapper) becomes an empty Struct.
 *
 * Nesting is bounded (MAX_NESTING): request data (a caller's claims) chooses the depth, and
 * the writers recurse, so deeper metadata is not serialized at all (the property read fails
 * with SERIALIZATION_FAILURE) rather than overflowing the stack inside a VM callback, which
 * would trap the VM and fail every later request on it.
 */
import { writeAscii, writeUtf8 } from './pairs.ts';
import type { PropertyValue } from './values.ts';

type Fields = Record<string, PropertyValue>;

let scratch = new Uint8Array(1024);
const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);
const hasOwn = Object.prototype.hasOwnProperty;

/** Varint size of each container's length prefix in the previous call, by the order they were opened (the first 256). */
const prefixSizes = new Uint8Array(256).fill(1);
let opened = 0;

/**
 * Structs and lists one filter_metadata entry may nest, its own Struct included: protobuf's
 * default recursion limit, which the JSON parser of Envoy's jwt_authn applies to a token's
 * payload, so Envoy never holds claims nested deeper (docs/host.md, "Limits").
 */
export const MAX_NESTING = 100;
/** Containers open around the value being written. */
let depth = 0;

/** Thrown when the scratch buffer is too small: the call starts over with a larger one. */
const FULL = new Error('metadata scratch buffer full');
/** Thrown past MAX_NESTING: the metadata is not serialized. */
const TOO_DEEP = new Error('metadata nested too deep');

/**
 * The encoded Metadata with these filter_metadata Structs: a view of the scratch buffer,
 * valid until the next call (copy it to keep it); null when a value nests deeper than
 * MAX_NESTING (Envoy's SERIALIZATION_FAILURE).
 */
export function encodeMetadata(filterMetadata: Fields): Uint8Array | null {
  for (;;) {
    opened = 0;
    depth = 0;
    try {
      return scratch.subarray(0, writeEntries(scratch, 0, filterMetadata, false));
    } catch (e) {
      if (e === TOO_DEEP) return null;
      if (e !== FULL) throw e;
      scratch = new Uint8Array(scratch.length * 2);
    }
  }
}

/** Enters a Struct or list: one level deeper, refused past MAX_NESTING. */
function enter(): void {
  if (++depth > MAX_NESTING) throw TOO_DEEP;
}

/** A plain object (a JSON object), not a list, bytes or one of the host's attribute classes. */
function isFields(v: PropertyValue | undefined): v is Fields {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Map entries at out[p] as repeated field 1, { string key = 1; message value = 2 }, one
 * per own property: Values in a Struct (`values`), Structs in Metadata's map. A flag
 * rather than a writer function keeps the calls direct. Returns the end.
 */
function writeEntries(out: Uint8Array, p: number, fields: Fields, values: boolean): number {
  if (values) enter();
  for (const key in fields) {
    if (!hasOwn.call(fields, key)) continue;
    const v = fields[key];
    if (values && typeof v === 'string' && key.length + v.length < 122) {
      const end = writeShortEntry(out, p, key, v);
      if (end > 0) {
        p = end;
        continue;
      }
    }
    const entry = open(out, p, 0x0a);
    const entryAt = p + 1;
    p = writeString(out, entryAt + reserved(entry), 0x0a, key);
    const value = open(out, p, 0x12);
    const valueAt = p + 1;
    const body = valueAt + reserved(value);
    p = values ? writeValue(out, body, v) : isFields(v) ? writeEntries(out, body, v, true) : body;
    p = close(out, valueAt, p, value);
    p = close(out, entryAt, p, entry);
  }
  if (values) depth--;
  return p;
}

/**
 * A Struct entry whose key and string value are ASCII and 121 bytes or fewer together:
 * every length is one byte and known before writing. Returns the end, or -1 when either
 * is not ASCII (the caller writes the entry the general way over it).
 */
function writeShortEntry(out: Uint8Array, p: number, key: string, value: string): number {
  const kn = key.length;
  const vn = value.length;
  room(out, p, 8 + kn + vn);
  out[p] = 0x0a;
  out[p + 1] = 6 + kn + vn;
  out[p + 2] = 0x0a;
  out[p + 3] = kn;
  if (writeAscii(key, out, p + 4) < 0) return -1;
  const q = p + 4 + kn;
  out[q] = 0x12;
  out[q + 1] = 2 + vn;
  out[q + 2] = 0x1a;
  out[q + 3] = vn;
  return writeAscii(value, out, q + 4) < 0 ? -1 : q + 4 + vn;
}

/** The body of a Value message at out[p]; returns its end. */
function writeValue(out: Uint8Array, p: number, v: PropertyValue | undefined): number {
  switch (typeof v) {
    case 'string':
      return writeString(out, p, 0x1a, v);
    case 'number':
    case 'bigint':
      room(out, p, 9);
      F64[0] = Number(v); // little-endian, as every platform Node runs on
      out[p] = 0x11;
      for (let i = 0; i < 8; i++) out[p + 1 + i] = F64_BYTES[i];
      return p + 9;
    case 'boolean':
      room(out, p, 2);
      out[p] = 0x20;
      out[p + 1] = v ? 1 : 0;
      return p + 2;
  }
  if (v === null || v === undefined) {
    room(out, p, 2);
    out[p] = 0x08;
    out[p + 1] = 0;
    return p + 2;
  }
  if (v instanceof Uint8Array) {
    room(out, p, v.length + 6);
    out[p] = 0x1a;
    out.set(v, p + 2);
    return close(out, p + 1, p + 2 + v.length, -1);
  }
  if (Array.isArray(v)) {
    enter();
    const list = open(out, p, 0x32);
    const listAt = p + 1;
    p = listAt + reserved(list);
    for (const item of v) {
      const value = open(out, p, 0x0a);
      p = close(out, p + 1, writeValue(out, p + 1 + reserved(value), item), value);
    }
    depth--;
    return close(out, listAt, p, list);
  }
  const struct = open(out, p, 0x2a);
  const body = p + 1 + reserved(struct);
  return close(out, p + 1, isFields(v) ? writeEntries(out, body, v, true) : body, struct);
}

function room(out: Uint8Array, p: number, n: number): void {
  if (p + n > out.length) throw FULL;
}

/**
 * Writes the tag of a nested message at out[p]; its length prefix follows, reserved(c)
 * bytes, where c (returned) is the container's number, -1 past the first 256.
 */
function open(out: Uint8Array, p: number, tag: number): number {
  room(out, p, 7);
  out[p] = tag;
  return opened < prefixSizes.length ? opened++ : -1;
}

const reserved = (c: number): number => (c < 0 ? 1 : prefixSizes[c]);

/**
 * Writes the length prefix at `at` of the body that ends at `p`, for which reserved(c)
 * bytes were left; when the varint needs another size the body moves. Returns the body's end.
 */
function close(out: Uint8Array, at: number, p: number, c: number): number {
  const left = reserved(c);
  let n = p - at - left;
  if (n < 0x80 && left === 1) {
    out[at] = n;
    return p;
  }
  const size = n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
  if (size !== left) {
    room(out, p, size);
    out.copyWithin(at + size, at + left, p);
    p += size - left;
    if (c >= 0) prefixSizes[c] = size;
  }
  for (; n >= 0x80; n >>>= 7) out[at++] = (n & 0x7f) | 0x80;
  out[at] = n;
  return p;
}

/** A string field at out[p]: UTF-8 takes at most 3 bytes per UTF-16 unit. Returns its end. */
function writeString(out: Uint8Array, p: number, tag: number, s: string): number {
  const n = s.length;
  room(out, p, 7 + 3 * n);
  out[p] = tag;
  const ascii = writeAscii(s, out, p + 2) >= 0;
  if (ascii && n < 0x80) {
    out[p + 1] = n;
    return p + 2 + n;
  }
  return close(out, p + 1, p + 2 + (ascii ? n : writeUtf8(s, out, p + 2)), -1);
}
