/**
 * Properties as Envoy serves them to `proxy_get_property` (context.cc getProperty and
 * serializeValue): a path of NUL-terminated segments walks CEL values; the final value is
 * serialized by type. Strings and bytes raw; int64/uint64 (here: bigint) and double (here:
 * number) as 8 little-endian bytes; bool as 1 byte; maps (including a
 * google.protobuf.Struct, which CEL unwraps into a map) and lists in the pairs format —
 * a list as pairs with empty values; protobuf messages as their serialized bytes. A null
 * anywhere in the value fails with SERIALIZATION_FAILURE, as does serializing one of
 * Envoy's lookup-only wrappers (`request`, `request.headers`, `connection`, …) as a whole.
 */
import { Status } from './abi.ts';
import { encodePairs, encodeUtf8, decodeUtf8, utf8Length, writeUtf8, type Pair, type Bytes } from './pairs.ts';

/** A value reachable through a property path. */
export type PropertyValue =
  | string
  | Uint8Array
  | number
  | bigint
  | boolean
  | null
  | PropertyValue[]
  | { [key: string]: PropertyValue }
  | Lookup
  | Message;

/** Envoy's attribute wrappers: keys can be looked up one by one, the whole cannot be serialized. */
export abstract class Lookup {
  abstract get(key: string): PropertyValue | undefined;
}

/** A protobuf message: walked by field name, serialized as its wire bytes. */
export abstract class Message {
  constructor(readonly fields: Record<string, PropertyValue>) {}
  abstract serialize(): Uint8Array;
}

const splitCache = new Map<string, string[]>();

/** Splits a raw property path into segments (a trailing NUL ends the last segment). Cached: filters read the same few paths. */
export function splitPath(raw: Bytes): string[] {
  const s = decodeUtf8(raw);
  let parts = splitCache.get(s);
  if (parts) return parts;
  parts = s.split('\0');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  if (splitCache.size < 1024) splitCache.set(s, parts);
  return parts;
}

/** Walks `segments` below the value `top` returns for the first one; undefined: NOT_FOUND. */
export function resolve(segments: string[], top: (name: string) => PropertyValue | undefined): PropertyValue | undefined {
  if (segments.length === 0) return undefined;
  let value = top(segments[0]);
  for (let k = 1; k < segments.length && value !== undefined; k++) value = child(value, segments[k]);
  return value;
}

function child(value: PropertyValue, key: string): PropertyValue | undefined {
  if (value instanceof Lookup) return value.get(key);
  if (value instanceof Message) return Object.hasOwn(value.fields, key) ? value.fields[key] : undefined;
  if (Array.isArray(value)) {
    if (!/^-?\d+$/.test(key)) return undefined;
    const idx = Number(key);
    return idx >= 0 && idx < value.length ? value[idx] : undefined;
  }
  if (isMap(value)) return Object.hasOwn(value, key) ? value[key] : undefined;
  return undefined;
}

function isMap(v: PropertyValue): v is { [key: string]: PropertyValue } {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array);
}

/** Envoy's serializeValue: the bytes, or SERIALIZATION_FAILURE. */
export function serialize(value: PropertyValue): Uint8Array | number {
  switch (typeof value) {
    case 'string':
      return encodeUtf8(value);
    case 'number': {
      const out = new Uint8Array(8);
      new DataView(out.buffer).setFloat64(0, value, true);
      return out;
    }
    case 'bigint': {
      const out = new Uint8Array(8);
      new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
      return out;
    }
    case 'boolean':
      return Uint8Array.of(value ? 1 : 0);
  }
  if (value === null || value === undefined || value instanceof Lookup) return Status.SERIALIZATION_FAILURE;
  if (value instanceof Uint8Array) return value;
  if (value instanceof Message) return value.serialize();
  const cached = serialized.get(value);
  if (cached) return cached;
  const pairs: Pair<string | Bytes>[] = [];
  if (Array.isArray(value)) {
    for (const item of value) {
      const bytes = serialize(item);
      if (typeof bytes === 'number') return bytes;
      pairs.push([bytes, '']);
    }
  } else {
    for (const key of Object.keys(value)) {
      const bytes = serialize(value[key]);
      if (typeof bytes === 'number') return bytes;
      pairs.push([key, bytes]);
    }
  }
  const bytes = encodePairs(pairs);
  serialized.set(value, bytes);
  return bytes;
}

/**
 * Serialized maps and lists by identity: claims objects are reused across requests (one
 * verified token, many requests), so the host encodes them once. Values handed to the
 * host are treated as immutable.
 */
const serialized = new WeakMap<object, Uint8Array>();

/** The `metadata` attribute: envoy.config.core.v3.Metadata with `filter_metadata` Structs. */
export function metadataMessage(filterMetadata: Record<string, PropertyValue>): Message {
  return new MetadataMessage(filterMetadata);
}

class MetadataMessage extends Message {
  constructor(private readonly filterMetadata: Record<string, PropertyValue>) {
    super({ filter_metadata: filterMetadata, typed_filter_metadata: {} });
  }
  serialize(): Uint8Array {
    return encodeMetadata(this.filterMetadata);
  }
}

/**
 * Protobuf wire encoding of Metadata { map<string, google.protobuf.Struct> filter_metadata = 1 }
 * and of Struct/Value/ListValue, by hand: this runs per request, and protobufjs' generic
 * path costs several microseconds. Encoded Structs are cached by object identity.
 */
function encodeMetadata(filterMetadata: Record<string, PropertyValue>): Uint8Array {
  const cached = structs.get(filterMetadata);
  if (cached) return cached;
  const w = new ProtoWriter();
  for (const name of Object.keys(filterMetadata)) {
    const struct = encodeStruct(filterMetadata[name]);
    w.tag(1, 2).uint(utf8Length(name) + struct.length + 2 + varintLength(utf8Length(name)) + varintLength(struct.length));
    w.string(1, name).bytes(2, struct);
  }
  const out = w.finish();
  structs.set(filterMetadata, out);
  return out;
}

/** Encodings by object identity (metadata objects, Structs, claims): values handed to the host are immutable. */
const structs = new WeakMap<object, Uint8Array>();

function encodeStruct(value: PropertyValue): Uint8Array {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array || value instanceof Lookup || value instanceof Message) {
    return new Uint8Array(0);
  }
  let out = structs.get(value);
  if (out) return out;
  const w = new ProtoWriter();
  for (const key of Object.keys(value)) {
    // Scalars are written in place (their length is known up front); only nested maps and
    // lists are encoded apart: claims are mostly strings and numbers, fresh per request.
    const v = value[key];
    const nested = isScalar(v) ? null : encodeValue(v);
    const vl = nested ? nested.length : scalarLength(v as Scalar);
    const k = utf8Length(key);
    w.tag(1, 2).uint(1 + varintLength(k) + k + 1 + varintLength(vl) + vl);
    w.string(1, key).tag(2, 2).uint(vl);
    if (nested) w.raw(nested);
    else writeScalar(w, v as Scalar);
  }
  out = w.finish();
  structs.set(value, out);
  return out;
}

function encodeValue(v: PropertyValue): Uint8Array {
  const w = new ProtoWriter();
  if (isScalar(v)) writeScalar(w, v);
  else if (Array.isArray(v)) {
    let list = structs.get(v);
    if (!list) {
      const items = new ProtoWriter();
      for (const item of v) items.bytes(1, encodeValue(item));
      structs.set(v, (list = items.finish()));
    }
    w.bytes(6, list);
  } else w.bytes(5, encodeStruct(v));
  return w.finish();
}

type Scalar = null | undefined | number | bigint | string | boolean | Uint8Array;

function isScalar(v: PropertyValue | undefined): v is Scalar {
  return v === null || typeof v !== 'object' || v instanceof Uint8Array;
}

/** Bytes of a scalar's Value message (what writeScalar writes). */
function scalarLength(v: Scalar): number {
  if (v === null || v === undefined || typeof v === 'boolean') return 2;
  if (typeof v === 'number' || typeof v === 'bigint') return 9;
  const n = typeof v === 'string' ? utf8Length(v) : v.length;
  return 1 + varintLength(n) + n;
}

function writeScalar(w: ProtoWriter, v: Scalar): void {
  if (v === null || v === undefined) w.tag(1, 0).uint(0);
  else if (typeof v === 'number' || typeof v === 'bigint') w.tag(2, 1).double(Number(v));
  else if (typeof v === 'string') w.string(3, v);
  else if (typeof v === 'boolean') w.tag(4, 0).uint(v ? 1 : 0);
  else w.bytes(3, v);
}

const varintLength = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);

const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);

/**
 * One scratch buffer for every writer, used as a stack: a writer started while another one
 * is encoding (a nested Struct or list, always finished before the outer one writes again)
 * begins above the outer one's bytes, and finish() copies its bytes out and pops it. No
 * buffer per value, which is what made fresh claims per request expensive.
 */
let scratch = new Uint8Array(4096);
let top = 0;

class ProtoWriter {
  private readonly start = top;
  private at = top;
  private room(n: number): void {
    top = this.at + n;
    if (top <= scratch.length) return;
    const bigger = new Uint8Array(Math.max(scratch.length * 2, top));
    bigger.set(scratch.subarray(0, this.at));
    scratch = bigger;
  }
  uint(n: number): this {
    this.room(5);
    while (n >= 0x80) {
      scratch[this.at++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    scratch[this.at++] = n;
    return this;
  }
  tag(field: number, wire: number): this {
    return this.uint((field << 3) | wire);
  }
  double(x: number): this {
    this.room(8);
    F64[0] = x; // little-endian, as every platform Node runs on
    scratch.set(F64_BYTES, this.at);
    this.at += 8;
    return this;
  }
  raw(b: Uint8Array): this {
    this.room(b.length);
    scratch.set(b, this.at);
    this.at += b.length;
    return this;
  }
  string(field: number, s: string): this {
    const n = utf8Length(s);
    this.tag(field, 2).uint(n).room(n);
    this.at += writeUtf8(s, scratch, this.at);
    return this;
  }
  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2).uint(b.length);
    return this.raw(b);
  }
  finish(): Uint8Array {
    top = this.start;
    return scratch.slice(this.start, this.at);
  }
}
