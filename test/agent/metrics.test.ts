import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import * as promClient from 'prom-client';
import { Counter, Gauge, Registry, register } from '../../agent/metrics.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

test("agent/metrics.ts hands out prom-client's own classes and default registry", () => {
  assert.is(Registry, promClient.Registry);
  assert.is(Counter, promClient.Counter);
  assert.is(Gauge, promClient.Gauge);
  assert.is(register, promClient.register);
});

test("on its own it serves metrics without loading prom-client's index (cluster, Pushgateway, default metrics)", () => {
  const script = `
    import { createRequire } from 'node:module';
    const { Counter, Registry } = await import('./agent/metrics.ts');
    const registry = new Registry();
    new Counter({ name: 'palisade_test_total', help: 'a test counter', registers: [registry] }).inc();
    const text = await registry.metrics();
    const require = createRequire(import.meta.url);
    const indexLoaded = require.resolve('prom-client') in require.cache;
    console.log(JSON.stringify({ counted: text.includes('palisade_test_total 1'), indexLoaded, cluster: process.moduleLoadList.includes('NativeModule cluster') }));
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout.trim().split('\n').pop()!), { counted: true, indexLoaded: false, cluster: false });
});

test.run();
