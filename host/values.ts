/** What a property path reaches (properties.ts walks it, metadata-pb.ts encodes it). */

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

/**
 * A protobuf message: walked by field name, serialized as its wire bytes. `encode()` may
 * answer a view of a scratch buffer, valid until the next encode (the host copies it into
 * the module right away); `serialize()` answers bytes of its own. Both answer null when
 * the message cannot be serialized (SERIALIZATION_FAILURE).
 */
export abstract class Message {
  constructor(readonly fields: Record<string, PropertyValue>) {}
  abstract encode(): Uint8Array | null;
  serialize(): Uint8Array | null {
    return this.encode()?.slice() ?? null;
  }
}
