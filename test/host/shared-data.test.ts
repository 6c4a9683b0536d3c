/**
 * The shared-data store: what a filter sets is what any filter with the same VM id gets,
 * with Envoy's CAS rules, however keys and values grow (index and slab growth, values
 * moving to larger records), with keys and values read and written in place at any offset
 * of module memory, and whatever the order of lookups and sets (the store remembers the
 * last slot it found for the set that usually follows).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { SharedData } from '../../host/shared-data.ts';
import { getSharedData, setSharedData, sharedStore } from '../../host/shared.ts';
import { Status } from '../../host/abi.ts';

const bytes = (s: string) => new TextEncoder().encode(s);
const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** A stand-in for module memory: bytes placed at an offset, as a filter passes them. */
class Memory {
  readonly u8 = new Uint8Array(1 << 16);
  readonly dv = new DataView(this.u8.buffer);
  put(at: number, b: Uint8Array): [number, number] {
    this.u8.set(b, at);
    return [at, b.length];
  }
}

function valueOf(store: SharedData, key: Uint8Array): Uint8Array | undefined {
  const record = store.lookup(view(key), 0, key.length);
  if (record < 0) return undefined;
  const out = new Uint8Array(store.valueLength(record) + 3);
  store.copyValue(record, view(out), 3); // at an unaligned offset, as module memory may be
  return out.subarray(3);
}

test('every key keeps its latest value through growth and moves', () => {
  const store = new SharedData();
  const expected = new Map<string, Uint8Array>();
  // 3,000 keys; each round grows some values by 16 bytes (moving them) and shrinks others.
  for (let round = 0; round < 6; round++) {
    for (let i = 0; i < 3000; i++) {
      const size = (i % 7 === round % 7 ? 0 : 16 * (round + (i % 5))) + (i % 3);
      const value = Uint8Array.from({ length: size }, (_, k) => (i * 31 + k + round) & 0xff);
      const key = bytes(`k.${i}`);
      assert.is(store.set(view(key), 0, key.length, view(value), 0, value.length, 0), Status.OK);
      expected.set(`k.${i}`, value);
    }
  }
  for (const [key, value] of expected) {
    assert.equal(valueOf(store, bytes(key)), value, key);
    assert.equal(store.value(store.lookup(view(bytes(key)), 0, bytes(key).length)), value, key);
  }
  assert.is(valueOf(store, bytes('k.3000')), undefined);
  assert.is(valueOf(store, bytes('k.')), undefined);
});

test('setSharedData: CAS 0 always writes, a stale CAS is refused, a new key takes any CAS', () => {
  const vm = `shared-data-test-${process.pid}`;
  assert.is(getSharedData(vm, 'a'), undefined);
  assert.is(setSharedData(vm, 'a', bytes('one'), 12345), Status.OK); // new key: CAS not compared
  const first = getSharedData(vm, 'a')!;
  assert.equal(new TextDecoder().decode(first.value), 'one');
  assert.is(setSharedData(vm, bytes('a'), bytes('two'), first.cas), Status.OK);
  assert.is(setSharedData(vm, 'a', bytes('three'), first.cas), Status.CAS_MISMATCH);
  assert.is(setSharedData(vm, 'a', bytes('four'), 0), Status.OK);
  assert.equal(new TextDecoder().decode(getSharedData(vm, 'a')!.value), 'four');
  assert.is(getSharedData(`${vm}-other`, 'a'), undefined, 'VM ids do not share');
  assert.is(sharedStore(vm), sharedStore(vm), 'one store per VM id');
});

test('a set right after a lookup of another key, or of a key changed in memory since, hits the right key', () => {
  const store = new SharedData();
  const mem = new Memory();
  const [ka, la] = mem.put(100, bytes('palisade.jti.1'));
  const [va, lva] = mem.put(200, bytes('value-a'));
  assert.is(store.set(mem.dv, ka, la, mem.dv, va, lva, 0), Status.OK);
  const a = store.lookup(mem.dv, ka, la);
  const casA = store.version(a);
  // the filter reuses the key's memory for another key before setting
  const [kb, lb] = mem.put(100, bytes('palisade.jti.2'));
  assert.is(store.set(mem.dv, kb, lb, mem.dv, va, lva, casA), Status.OK, 'new key: CAS not compared');
  assert.is(store.set(mem.dv, kb, lb, mem.dv, va, lva, casA), Status.CAS_MISMATCH, 'b has its own version');
  mem.put(100, bytes('palisade.jti.1'));
  assert.is(store.set(mem.dv, ka, la, mem.dv, va, 3, casA), Status.OK, "a's version is still casA");
  assert.equal(valueOf(store, bytes('palisade.jti.1')), bytes('val'));
  assert.equal(valueOf(store, bytes('palisade.jti.2')), bytes('value-a'));
});

/** One step of a random history: a lookup, or a set with a CAS that is 0, current, stale or arbitrary. */
type Op = { key: number; set: boolean; size: number; cas: 'zero' | 'current' | 'stale' | 'arbitrary'; keyAt: number; valueAt: number };

test('random histories of lookups and sets behave as a map with Envoy CAS versions', () => {
  const keys = ['', 'a', 'palisade.jti.0', 'palisade.jti.1', 'palisade.jti.16383', 'k'.repeat(37), 'é'];
  const op = fc.record<Op>({
    key: fc.nat(keys.length - 1),
    set: fc.boolean(),
    size: fc.oneof(fc.nat(40), fc.nat(300)),
    cas: fc.constantFrom('zero', 'current', 'stale', 'arbitrary'),
    keyAt: fc.nat(1000),
    valueAt: fc.nat(1000),
  });
  fc.assert(
    fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
      const store = new SharedData();
      const mem = new Memory();
      const model = new Map<number, { value: Uint8Array; version: number; stale: number[] }>();
      let fill = 0;
      for (const o of ops) {
        const [keyAt, keyLength] = mem.put(o.keyAt, bytes(keys[o.key]));
        const entry = model.get(o.key);
        if (!o.set) {
          const record = store.lookup(mem.dv, keyAt, keyLength);
          if (!entry) {
            assert.is(record, -1);
            continue;
          }
          assert.is(store.version(record), entry.version);
          const out = new Uint8Array(store.valueLength(record));
          store.copyValue(record, view(out), 0);
          assert.equal(out, entry.value);
          continue;
        }
        const value = Uint8Array.from({ length: o.size }, () => fill++ & 0xff);
        const [valueAt] = mem.put(2000 + o.valueAt, value);
        const version = entry?.version ?? 0;
        const cas = { zero: 0, current: version, stale: entry?.stale.at(-1) ?? 7, arbitrary: (o.valueAt * 7919) >>> 0 }[o.cas];
        const status = store.set(mem.dv, keyAt, keyLength, mem.dv, valueAt, value.length, cas);
        const expected = !entry || cas === 0 || cas === entry.version ? Status.OK : Status.CAS_MISMATCH;
        assert.is(status, expected);
        if (status !== Status.OK) continue;
        const record = store.lookup(mem.dv, keyAt, keyLength);
        const now = store.version(record);
        assert.ok(now !== 0 && now !== version, 'a set hands out a new, non-zero version');
        model.set(o.key, { value, version: now, stale: entry ? [...entry.stale, entry.version] : [] });
      }
    }),
    { numRuns: 300 },
  );
});

test.run();
