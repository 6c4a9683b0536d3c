/**
 * Where our host once differed from Envoy's (proxy-wasm-cpp-host + Envoy's header map and
 * stats): each test makes a module do what would behave differently there.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadFilter, FilterLoadError, type Filter, type FilterRequest } from '../../host/index.ts';
import { IMPORTS } from '../../host/abi.ts';
import { fixtureFilter, tinyModule, type TinyModule } from './fixtures.ts';

const request = (op: string): FilterRequest => ({ method: 'GET', path: '/cards/./42', authority: 'card.internal', headers: { 'x-test': op, 'x-request-id': 'r1' } });

let open: Filter[] = [];
async function load(wasm: Uint8Array | Promise<Uint8Array>): Promise<Filter> {
  const f = await loadFilter(await wasm);
  open.push(f);
  return f;
}
test.after.each(async () => {
  await Promise.all(open.map((f) => f.close()));
  open = [];
});

test('a replaced :path and an added pseudo-header stay among the pseudo-headers, as in Envoy\'s header map', async () => {
  const f = await load(fixtureFilter());
  const o = await f.handleRequest(request('normalize'));
  assert.equal(o.upstreamRequest!.headers, [
    [':authority', 'card.internal'], [':method', 'GET'], [':scheme', 'https'], [':path', '/cards/42'], [':x-normalized', '1'],
    ['x-test', 'normalize'], ['x-request-id', 'r1'],
  ]);
});

test('set_header_map_pairs puts pseudo-headers first, each group in the order given', async () => {
  const f = await load(fixtureFilter());
  const o = await f.handleRequest(request('pairs-mixed'));
  assert.equal(o.upstreamRequest!.headers, [[':path', '/p'], [':method', 'GET'], ['x-first', '1'], ['x-second', '2']]);
});

type Import = NonNullable<TinyModule['imports']>[number];
const env = (name: string, params: number): Import => ({ module: 'env', name, params: Array(params).fill('i32'), results: ['i32'] });
const wasi = (name: string, params: Import['params']): Import => ({ module: 'wasi_snapshot_preview1', name, params, results: ['i32'] });

/** A module whose `_initialize` calls `imp` once (with zero or the given arguments). */
function initializeCalling(imp: Import, args = imp.params.map(() => 0)): Uint8Array {
  return tinyModule({
    imports: [imp],
    exports: [
      { name: 'proxy_abi_version_0_2_1' },
      { name: 'malloc', params: ['i32'], results: ['i32'] },
      { name: '_initialize', calls: [{ import: 0, args }] },
    ],
  });
}

for (const imp of [env('proxy_define_metric', 4), env('proxy_get_property', 4), env('proxy_set_tick_period_milliseconds', 1), env('proxy_set_shared_data', 5), wasi('fd_read', ['i32', 'i32', 'i32', 'i32'])]) {
  test(`${imp.module}.${imp.name} during _initialize fails the VM, as cpp-host's restricted callbacks do`, async () => {
    try {
      await load(initializeCalling(imp, imp.params.map((_, k) => (k === imp.params.length - 1 ? 64 : 0))));
      assert.unreachable('the module started, Envoy would not start it');
    } catch (err) {
      assert.instance(err, FilterLoadError);
      assert.match((err as Error).message, `Wasm VM failed in _initialize: _initialize: restricted_callback: ${imp.module}.${imp.name} may not be called during _initialize`);
    }
  });
}

/** Every import Envoy links, as the module declares it. */
const everyImport = (): Import[] =>
  Object.entries(IMPORTS).flatMap(([module, functions]) =>
    Object.entries(functions).map(([name, signature]) => {
      const [params, results] = signature.split('->');
      return { module, name, params: [...params].map((p) => (p === 'j' ? 'i64' : 'i32')), results: results ? ['i32'] : [] };
    }),
  );

test('every import Envoy links is checked: outside the allowlist, each one fails _initialize', async () => {
  const allowed = new Set(['proxy_log', 'fd_write', 'args_sizes_get', 'args_get', 'environ_sizes_get', 'environ_get', 'fd_prestat_get', 'fd_prestat_dir_name', 'clock_time_get', 'random_get']);
  const started: string[] = [];
  for (const imp of everyImport()) {
    const f = await loadFilter(initializeCalling(imp)).catch((err: Error) => err);
    if (f instanceof Error) assert.match(f.message, `restricted_callback: ${imp.module}.${imp.name} may not be called during _initialize`);
    else {
      started.push(imp.name);
      await f.close();
    }
  }
  assert.equal([...new Set(started)].sort(), [...allowed].sort());
});

test('logging, clock and randomness stay allowed during _initialize', async () => {
  for (const [imp, args] of [
    [env('proxy_log', 3), [2, 0, 0]],
    [wasi('fd_write', ['i32', 'i32', 'i32', 'i32']), [1, 0, 0, 64]],
    [wasi('clock_time_get', ['i32', 'i64', 'i32']), [0, 0, 64]],
    [wasi('random_get', ['i32', 'i32']), [0, 8]],
    [wasi('environ_sizes_get', ['i32', 'i32']), [64, 68]],
  ] as [Import, number[]][]) {
    const f = await load(initializeCalling(imp, args));
    assert.is(f.failed, null, imp.name);
  }
});

/** A module whose malloc calls `imp`, and whose request callback makes the host allocate (header map pairs). */
function mallocCalling(imp: Import, args: number[]): Uint8Array {
  return tinyModule({
    imports: [imp, env('proxy_get_header_map_pairs', 3)],
    exports: [
      { name: 'proxy_abi_version_0_2_1' },
      { name: 'malloc', params: ['i32'], results: ['i32'], calls: [{ import: 0, args }] },
      { name: 'proxy_on_request_headers', params: ['i32', 'i32', 'i32'], results: ['i32'], calls: [{ import: 1, args: [0, 0, 4] }] },
    ],
  });
}

test('a host call other than logging or the clock from inside malloc fails the VM: 503, as in Envoy', async () => {
  const f = await load(mallocCalling(env('proxy_set_shared_data', 5), [0, 0, 0, 0, 0]));
  const o = await f.handleRequest(request('none'));
  assert.is(o.status, 503);
  assert.is(o.details, 'wasm_fail_stream');
  assert.match(f.failed!, 'restricted_callback: env.proxy_set_shared_data may not be called during malloc');
});

test('every import Envoy links is checked inside malloc: all but logging and the clock fail the VM', async () => {
  const allowed: string[] = [];
  for (const imp of everyImport()) {
    const f = await load(mallocCalling(imp, imp.params.map(() => 0)));
    await f.handleRequest(request('none'));
    if (f.failed === null) allowed.push(`${imp.module}.${imp.name}`);
    else assert.match(f.failed, `restricted_callback: ${imp.module}.${imp.name} may not be called during malloc`);
  }
  assert.equal(allowed.sort(), ['env.proxy_log', 'wasi_snapshot_preview1.clock_time_get', 'wasi_snapshot_preview1.fd_write', 'wasi_unstable.clock_time_get', 'wasi_unstable.fd_write']);
});

test('logging from inside malloc is allowed', async () => {
  const f = await load(mallocCalling(env('proxy_log', 3), [2, 0, 0]));
  const o = await f.handleRequest(request('none'));
  assert.is(f.failed, null);
  assert.is(o.kind, 'forward');
});

test('metrics carry the names Envoy\'s /stats shows: wasmcustom. before the defined name', async () => {
  const f = await load(fixtureFilter());
  await f.handleRequest(request('metrics'));
  assert.equal(f.stats(), {
    'wasmcustom.palisade_decisions.decision=allow': { type: 'counter', value: 1 },
    'wasmcustom.inflight': { type: 'gauge', value: 7 },
    'wasmcustom.latency': { type: 'histogram', value: 42, count: 1, sum: 42 },
  });
});

test.run();
