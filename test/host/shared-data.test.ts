/**
 * The shared-data store: what a filter sets is what any filter with the same VM id gets,
 * with Envoy's CAS rules, however keys and values grow (index and entry growth, values
 * moving to larger records).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SharedData } from '../../agent/host/shared-data.ts';
import { getSharedData, setSharedData } from '../../agent/host/shared.ts';
import { Status } from '../../agent/host/abi.ts';

const bytes = (s: string) => new TextEncoder().encode(s);

test('every key keeps its latest value through growth, moves and compaction', () => {
  const store = new SharedData();
  const expected = new Map<string, Uint8Array>();
  // 3,000 keys; each round grows some values by 16 bytes (moving them) and shrinks others.
  for (let round = 0; round < 6; round++) {
    for (let i = 0; i < 3000; i++) {
      const size = (i % 7 === round % 7 ? 0 : 16 * (round + (i % 5))) + (i % 3);
      const value = Uint8Array.from({ length: size }, (_, k) => (i * 31 + k + round) & 0xff);
      store.set(bytes(`k.${i}`), value, round * 3000 + i + 1);
      expected.set(`k.${i}`, value);
    }
  }
  for (const [key, value] of expected) {
    const e = store.find(bytes(key));
    assert.ok(e >= 0, key);
    assert.equal([...store.value(e)], [...value], key);
  }
  assert.is(store.find(bytes('k.3000')), -1);
  assert.is(store.find(bytes('k.')), -1);
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
});

test.run();
