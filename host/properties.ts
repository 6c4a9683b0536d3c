/**
 * Properties as Envoy serves them to `proxy_get_property` (context.cc getProperty and
 * serializeValue): a path of NUL-terminated segments walks CEL values; the final value is
 * serialized by type. Strings and bytes raw; int64/uint64 (here: bigint) and double (here:
 * number) as 8 little-endian bytes; bool as 1 byte; maps (including a
 * google.protobuf.Struct, which CEL unwraps into a map) and lists in the pairs format —
 * a list as pairs with empty values; protobuf messages as their serialized bytes. A null
 * anywhere in the value fails with SERIALIZATION_FAILURE, as does serializing one of
 * Envoy's lookup-only wrappers (`request`, `request.headers`, `connection`, …) as a whole,
 * or a value nesting more than MAX_NESTING maps and lists (request data chooses the depth:
 * bounded, the host never overflows its stack inside a VM callback).
 */
import { Status } from './abi.ts';
import { encodePairs, encodeUtf8, decodeUtf8, type Pair, type Bytes } from './pairs.ts';
import { encodeMetadata, MAX_NESTING } from './metadata-pb.ts';
import { Lookup, Message, type PropertyValue } from './values.ts';

export { Lookup, Message, type PropertyValue };


/**
 * Splits a raw property path into segments (a trailing NUL ends the last segment). Not
 * cached here: the VM keeps decoded paths by address (AddressCache), which answers the few
 * paths filters read on every request.
 */
export function splitPath(raw: Bytes): string[] {
  const parts = decodeUtf8(raw).split('\0');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/**
 * Paths a policy filter reads on every request (the caller's URI SAN, the jwt_authn
 * metadata): the host answers them straight from the request instead of walking
 * attribute wrappers, unless the request overrides properties (attributes.ts, lookup()).
 */
export const HotProperty = { NONE: 0, PEER_PRINCIPAL: 1, METADATA: 2 } as const;

export function hotProperty(segments: string[]): number {
  if (segments.length === 1 && segments[0] === 'metadata') return HotProperty.METADATA;
  if (segments.length === 2 && segments[0] === 'connection' && segments[1] === 'uri_san_peer_certificate') return HotProperty.PEER_PRINCIPAL;
  return HotProperty.NONE;
}

/** Envoy's prefix of the filter state a wasm filter sets (context.cc `CelStateKeyPrefix`). */
export const WASM_STATE = 'wasm.';

/** A property path as the module passed it, decoded. */
export interface PropertyPath {
  segments: string[];
  hot: number;
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

/** Envoy's serializeValue: the bytes, or SERIALIZATION_FAILURE. `depth`: maps and lists around the value. */
export function serialize(value: PropertyValue, depth = 0): Uint8Array | number {
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
  if (value instanceof Message) return value.serialize() ?? Status.SERIALIZATION_FAILURE;
  if (depth >= MAX_NESTING) return Status.SERIALIZATION_FAILURE;
  const pairs: Pair<string | Bytes>[] = [];
  if (Array.isArray(value)) {
    for (const item of value) {
      const bytes = serialize(item, depth + 1);
      if (typeof bytes === 'number') return bytes;
      pairs.push([bytes, '']);
    }
  } else {
    for (const key of Object.keys(value)) {
      const bytes = serialize(value[key], depth + 1);
      if (typeof bytes === 'number') return bytes;
      pairs.push([key, bytes]);
    }
  }
  return encodePairs(pairs);
}

/** The `metadata` attribute: envoy.config.core.v3.Metadata with `filter_metadata` Structs. */
export function metadataMessage(filterMetadata: Record<string, PropertyValue>): Message {
  return new MetadataMessage(filterMetadata);
}

class MetadataMessage extends Message {
  constructor(private readonly filterMetadata: Record<string, PropertyValue>) {
    super({ filter_metadata: filterMetadata, typed_filter_metadata: {} });
  }
  encode(): Uint8Array | null {
    return encodeMetadata(this.filterMetadata);
  }
}
