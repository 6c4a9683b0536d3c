import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadFilter, FilterLoadError } from '../../host/index.ts';
import { tinyModule, minimalExports, fixtureFilter, type TinyModule } from './fixtures.ts';

async function refusal(spec: TinyModule | Uint8Array, options = {}): Promise<string> {
  try {
    const filter = await loadFilter(spec instanceof Uint8Array ? spec : tinyModule(spec), options);
    await filter.close();
  } catch (err) {
    assert.instance(err, FilterLoadError);
    return (err as Error).message;
  }
  assert.unreachable('module loaded but Envoy would refuse it');
  return '';
}

const log = { module: 'env', name: 'proxy_log', params: ['i32', 'i32', 'i32'], results: ['i32'] } as const;

test('a module with exactly Envoy-provided imports loads', async () => {
  const filter = await loadFilter(
    tinyModule({
      imports: [
        { ...log, params: [...log.params], results: [...log.results] },
        { module: 'env', name: 'proxy_increment_metric', params: ['i32', 'i64'], results: ['i32'] },
        { module: 'wasi_snapshot_preview1', name: 'clock_time_get', params: ['i32', 'i64', 'i32'], results: ['i32'] },
        { module: 'wasi_unstable', name: 'fd_write', params: ['i32', 'i32', 'i32', 'i32'], results: ['i32'] },
        { module: 'wasi_snapshot_preview1', name: 'proc_exit', params: ['i32'], results: [] },
        { module: 'env', name: 'emscripten_notify_memory_growth', params: ['i32'], results: [] },
      ],
      exports: minimalExports,
    }),
  );
  const outcome = await filter.handleRequest({ method: 'GET', path: '/', authority: 'svc' });
  assert.is(outcome.kind, 'forward');
  await filter.close();
});

for (const [what, module, name] of [
  ['AssemblyScript abort', 'env', 'abort'],
  ['Math.random seed', 'env', 'seed'],
  ['trace', 'env', 'trace'],
  ['an unknown module', 'fs', 'readFile'],
  ['a proxy-wasm 0.1.0 only function', 'env', 'proxy_get_configuration'],
] as const) {
  test(`refuses ${what} (${module}.${name}) naming the import`, async () => {
    const message = await refusal({ imports: [{ module, name, params: ['i32'], results: [] }], exports: minimalExports });
    assert.match(message, `missing import: ${module}.${name}`);
  });
}

test('refuses an Envoy import with the wrong signature', async () => {
  const message = await refusal({ imports: [{ module: 'env', name: 'proxy_log', params: ['i32', 'i32'], results: ['i32'] }], exports: minimalExports });
  assert.match(message, 'env.proxy_log');
  assert.match(message, 'want: (i32, i32, i32) -> i32');
  const metric = await refusal({ imports: [{ module: 'env', name: 'proxy_increment_metric', params: ['i32', 'i32'], results: ['i32'] }], exports: minimalExports });
  assert.match(metric, 'env.proxy_increment_metric');
});

test('requires the 0.2.1 ABI export and refuses other ABI versions', async () => {
  assert.match(await refusal({ exports: [{ name: 'malloc', params: ['i32'], results: ['i32'] }] }), 'proxy_abi_version_0_2_1');
  assert.match(
    await refusal({ exports: [{ name: 'proxy_abi_version_0_1_0' }, { name: 'malloc', params: ['i32'], results: ['i32'] }] }),
    'unsupported ABI version (proxy_abi_version_0_1_0)',
  );
});

test('requires memory and an allocator', async () => {
  assert.match(await refusal({ exports: [{ name: 'proxy_abi_version_0_2_1' }] }), 'malloc or proxy_on_memory_allocate');
  assert.match(await refusal({ exports: minimalExports, memory: false }), 'memory');
  const filter = await loadFilter(tinyModule({ exports: [{ name: 'proxy_abi_version_0_2_1' }, { name: 'proxy_on_memory_allocate', params: ['i32'], results: ['i32'] }] }));
  await filter.close();
});

test('refuses a callback exported with the wrong signature', async () => {
  const message = await refusal({ exports: [...minimalExports!, { name: 'proxy_on_request_headers', params: ['i32', 'i32'], results: ['i32'] }] });
  assert.match(message, 'proxy_on_request_headers');
});

test('refuses a start section (it would run before any context exists)', async () => {
  const message = await refusal({ exports: [{ name: 'init' }, ...minimalExports!], start: true });
  assert.match(message, 'start section');
});

test('refuses bytes that are not wasm', async () => {
  assert.match(await refusal(new TextEncoder().encode('not wasm at all')), 'not a wasm module');
});

test('proxy_on_configure returning false refuses the filter', async () => {
  const message = await refusal(await fixtureFilter(), { configuration: 'reject' });
  assert.match(message, 'proxy_on_configure returned false');
});

test('proxy_on_vm_start sees the VM configuration', async () => {
  const lines: string[] = [];
  const filter = await loadFilter(await fixtureFilter(), { vmConfiguration: 'vm-config', configuration: 'plugin-config', log: (l) => lines.push(l.message) });
  assert.ok(lines.includes('vm_config=vm-config'));
  assert.ok(lines.includes('configured plugin-config'));
  await filter.close();
});

test.run();
