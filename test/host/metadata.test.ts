/**
 * The `metadata` attribute's encoder, byte for byte against protobufjs encoding the same
 * envoy.config.core.v3.Metadata: random JSON-like values (every Value kind, non-ASCII and
 * lone surrogates, long strings with multi-byte lengths, nesting), in sequences whose
 * shapes change from call to call (the encoder sizes length prefixes from the previous
 * call), and values that are not plain JSON.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { encodeMetadata, MAX_NESTING } from '../../host/metadata-pb.ts';
import { serialize } from '../../host/properties.ts';
import { Status } from '../../host/abi.ts';
import type { PropertyValue } from '../../host/properties.ts';

type Fields = Record<string, PropertyValue>;

// The reference: protobufjs with its bundled google/protobuf/struct.proto.
const root = protobuf.Root.fromJSON(protobuf.common.get('google/protobuf/struct.proto')!);
root.add(new protobuf.Type('Metadata').add(new protobuf.MapField('filter_metadata', 1, 'string', 'google.protobuf.Struct')));
const Metadata = root.lookupType('Metadata');

/** Lone surrogates as UTF-8 writes them, U+FFFD (protobufjs writes short strings' surrogates raw). */
const wellFormed = (s: string): string => s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');

const isPlain = (v: object): boolean => [Object.prototype, null].includes(Object.getPrototypeOf(v));

/** The same value as protobufjs takes a google.protobuf.Value. */
function pbValue(v: PropertyValue | undefined): object {
  switch (typeof v) {
    case 'string':
      return { stringValue: wellFormed(v) };
    case 'number':
    case 'bigint':
      return { numberValue: Number(v) };
    case 'boolean':
      return { boolValue: v };
  }
  if (v === null || v === undefined) return { nullValue: 0 };
  if (v instanceof Uint8Array) return { stringValue: new TextDecoder().decode(v) }; // valid UTF-8 only, below
  if (Array.isArray(v)) return { listValue: { values: v.map(pbValue) } };
  return { structValue: pbStruct(v) };
}

/** A Struct of the object's own properties (none for objects that are not plain), keys in the same order. */
function pbStruct(v: object): object {
  const fields = Object.create(null);
  if (isPlain(v)) for (const [key, value] of Object.entries(v)) fields[key] = pbValue(value);
  return { fields };
}

function expected(filterMetadata: Fields): Buffer {
  const map = Object.create(null);
  for (const [key, value] of Object.entries(filterMetadata)) map[key] = typeof value === 'object' && value !== null ? pbStruct(value) : { fields: {} };
  return Buffer.from(Metadata.encode({ filter_metadata: map }).finish());
}

function assertSameBytes(filterMetadata: Fields): void {
  const mine = Buffer.from(encodeMetadata(filterMetadata)!);
  const theirs = expected(filterMetadata);
  if (!mine.equals(theirs)) assert.fixture(mine.toString('hex'), theirs.toString('hex'));
}

// Keys are well-formed (two lone surrogates would collapse into one U+FFFD key in the model);
// values take any UTF-16, lone surrogates included.
const key = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 6 }), fc.constantFrom('__proto__', '0', '10', 'iss'));
const text = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({ unit: 'grapheme', minLength: 40, maxLength: 200 }),
  fc.string({ minLength: 60, maxLength: 300 }),
  fc.constantFrom('\uD800', 'a\uDC00b', '\uDBFF\uDBFF', 'x'.repeat(130)),
);
const json = fc.letrec<{ value: PropertyValue; struct: Fields }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    text,
    fc.double(),
    fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
    fc.boolean(),
    fc.constant(null),
    fc.string({ unit: 'grapheme', maxLength: 10 }).map((s) => new TextEncoder().encode(s)),
    fc.array(tie('value'), { maxLength: 6 }),
    tie('struct'),
  ),
  struct: fc.dictionary(key, tie('value'), { maxKeys: 8 }),
}));
const metadata = fc.dictionary(key, fc.oneof(json.struct, json.value), { maxKeys: 4 });

test('random metadata, one after another, encodes as protobufjs encodes it', () => {
  fc.assert(
    fc.property(fc.array(metadata, { minLength: 1, maxLength: 4 }), (sequence) => sequence.forEach(assertSameBytes)),
    { numRuns: 400 },
  );
});

test('the shape Envoy hands over: jwt_authn claims with a fingerprint, lengths changing from call to call', () => {
  for (let i = 0; i < 200; i++) {
    const fingerprint = {
      iss: `spiffe://bank.example/ns/team${i % 50}/sa/svc${i}`, sub: `spiffe://bank.example/ns/team${i % 50}/sa/svc${i}`,
      aud: 'spiffe://bank.example/ns/core/sa/api', htm: 'GET', htu: `/api/v1/res${i}/${'x'.repeat(i)}`,
      iat: 1764400000 + i, exp: 1764400030 + i, jti: `jti-${i}`,
    };
    assertSameBytes({ 'envoy.filters.http.jwt_authn': i % 3 ? { user: { sub: `user-${i}` }, fingerprint } : { user: { sub: 'u' } } });
  }
});

test('large messages: many containers, lengths over 16 KiB, a scratch buffer that grows', () => {
  const many: Fields = {};
  for (let i = 0; i < 600; i++) many[`k${i}`] = i % 2 ? [i, { nested: `v${i}` }] : `value ${i}`;
  assertSameBytes({ many });
  assertSameBytes({ long: { text: 'é'.repeat(30000), list: Array.from({ length: 3000 }, (_, i) => i) } });
  assertSameBytes({ small: { a: 'b' } });
});

test('not plain JSON: attribute objects and class instances are empty Structs; inherited and symbol keys are not walked', () => {
  class Claims {
    sub = 'alice';
  }
  const inherits = Object.assign(Object.create({ inherited: 'no' }), { own: 'yes' });
  const withSymbol = { a: 1, [Symbol('s')]: 2 } as unknown as Fields;
  const odd = { date: new Date(0), map: new Map([['a', 1]]), claims: new Claims(), inherits, withSymbol } as unknown as Fields;
  assertSameBytes({ odd, top: new Claims() as unknown as PropertyValue } as Fields);
  assertSameBytes({ proto: JSON.parse('{"__proto__": {"x": "y"}, "nulled": null}') });
  const bare = Object.assign(Object.create(null), { k: 'v' });
  assertSameBytes({ bare });
  // own properties only, even when something made Object.prototype enumerable-polluted
  Object.defineProperty(Object.prototype, 'polluted', { value: 'x', enumerable: true, configurable: true, writable: true });
  try {
    assertSameBytes({ a: { b: 'c', d: [{ e: 1 }] } });
  } finally {
    delete (Object.prototype as Record<string, unknown>).polluted;
  }
  // a lone surrogate in a key is written as U+FFFD, as in values
  assert.equal(Buffer.from(encodeMetadata({ '\uD800': {} })!).toString('hex'), '0a070a03efbfbd1200');
});

/** `levels` Structs, or lists and Structs alternating (when `mixed`), around a string, the outermost a Struct. */
function nested(levels: number, mixed: boolean): PropertyValue {
  let v: PropertyValue = 'x';
  for (let i = levels - 1; i >= 0; i--) v = mixed && i % 2 ? [v] : { a: v };
  return v;
}

test('nesting: up to MAX_NESTING is encoded exactly; deeper, at any depth, is refused (null), never a thrown stack overflow', () => {
  for (const mixed of [false, true]) {
    // the filter's own Struct is the first level (protobufjs, the reference, stops short of 100)
    assertSameBytes({ f: nested(30, mixed) as Fields });
    assert.ok(encodeMetadata({ f: nested(MAX_NESTING, mixed) as Fields }));
    for (const levels of [MAX_NESTING + 1, 5_000, 200_000]) assert.is(encodeMetadata({ f: nested(levels, mixed) as Fields }), null, `${levels} levels`);
    assert.ok(encodeMetadata({ f: { user: 'ok' } }), 'the next call encodes again');
  }
  // a cycle (only reachable through the API, not JSON) is the same: too deep
  const cycle: Record<string, PropertyValue> = {};
  cycle.self = cycle;
  assert.is(encodeMetadata({ f: cycle }), null);
});

test('nesting: serializing a deep value for a deeper property path fails with SERIALIZATION_FAILURE instead of throwing', () => {
  assert.is(serialize(nested(200_000, true)), Status.SERIALIZATION_FAILURE);
  assert.ok(serialize(nested(10, true)) instanceof Uint8Array);
});

test.run();
