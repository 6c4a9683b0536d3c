import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getHeapStatistics } from 'node:v8';
import { settleDaemonHeap } from '../../cli/daemon-heap.ts';

// The agent's settling pass once it is ready (cli/daemon-heap.ts): it collects start-up
// garbage, and the V8 natives syntax it uses for that is off again afterwards, so no code
// the agent compiles later (a policy's host code, a package loaded lazily) can call V8's
// internals.

test('settling collects garbage left by start-up', () => {
  let garbage: number[][] | null = Array.from({ length: 64 }, () => Array.from({ length: 16_384 }, (_, i) => i));
  const withGarbage = getHeapStatistics().used_heap_size;
  assert.is(garbage.length, 64);
  garbage = null;
  settleDaemonHeap();
  const settled = getHeapStatistics().used_heap_size;
  assert.ok(settled < withGarbage - 4 * 1024 * 1024, `used heap ${withGarbage} -> ${settled} bytes`);
});

test('natives syntax is off again after settling', () => {
  settleDaemonHeap();
  assert.throws(() => new Function('%CollectGarbage(null)'), (err: unknown) => err instanceof SyntaxError);
});

test.run();
