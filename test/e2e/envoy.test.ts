import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { egressWasm } from '../filters/egress/harness.ts';
import { loadFilter } from '../../host/filter.ts';
import { generateBootstrap } from '../../envoy/bootstrap.ts';
import { bootstrapOptions } from '../../envoy/options.ts';
import { validateEnvoyConfig } from '../../envoy/validate.ts';
import { EcdsServer } from '../../agent/xds/ecds.ts';
import { compiledFile } from '../support/compiled.ts';

// The card-service example through the real compiler, into the bootstrap and ECDS, and the
// filter ECDS serves loaded in the strict host exactly as the served config describes it:
// a configuration the filter refuses is what Envoy would NACK.
const dir = mkdtempSync(path.join(tmpdir(), 'palisade-envoy-e2e-'));
const manifest = path.join(dir, 'card-service.manifest.json');
const ecds = new EcdsServer({ codeDir: path.join(dir, 'ecds') });

test.before(async () => {
  const source = 'examples/card-service/card-service.policy.json';
  const compiled = await compiledFile(source);
  writeFileSync(path.join(dir, compiled.manifest.wasm.file), compiled.wasm);
  writeFileSync(manifest, JSON.stringify(compiled.manifest));
});

test.after(() => {
  ecds.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the bootstrap from the compiled manifest validates and subscribes to the policy by name', () => {
  const config: any = generateBootstrap(bootstrapOptions({ policy: manifest }));
  assert.equal(validateEnvoyConfig(config), []);
  const filters = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters;
  assert.is(filters[1].name, 'palisade.policy.card-service');
  const jwt = filters[0].typed_config;
  assert.equal(jwt.providers.fingerprint.audiences, ['spiffe://bank.example/ns/payments/sa/card-service']);
});

test('the egress filter accepts the plugin configuration the bootstrap gives it', async () => {
  const routes = path.join(dir, 'routes.json');
  writeFileSync(routes, JSON.stringify({ ledger: { url: 'https://10.0.0.7:15006', spiffeId: 'spiffe://bank.example/ns/payments/sa/ledger' } }));
  const config: any = generateBootstrap(bootstrapOptions({ policy: manifest, routes }));
  const egress = config.static_resources.listeners[1].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.config;
  const filter = await loadFilter(await egressWasm(), { configuration: egress.configuration.value, rootId: egress.root_id, vmId: egress.vm_config.vm_id, name: egress.name });
  assert.ok(filter);
  const refused = await loadFilter(await egressWasm(), { configuration: '{"targets":[]}' }).then(() => 'loaded', (e: Error) => e.message);
  assert.is.not(refused, 'loaded');
});

test('the filter ECDS serves loads and configures in the strict host, in both modes', async () => {
  for (const configuration of [undefined, { mode: 'dry-run' }]) {
    const p = ecds.publish(manifest, configuration ? { configuration } : {});
    const filter = await loadFilter(readFileSync(p.wasmPath), { configuration: p.configuration, rootId: p.resource, vmId: p.resource, name: p.resource });
    assert.ok(filter);
  }
});

test('a plugin configuration the filter rejects fails to load, as Envoy would NACK it', async () => {
  const p = ecds.publish(manifest, { configuration: { mode: 'permissive' } });
  const loaded = await loadFilter(readFileSync(p.wasmPath), { configuration: p.configuration, rootId: p.resource }).then(() => 'loaded', (e: Error) => e.message);
  assert.match(loaded, /configur/i);
});

test.run();
