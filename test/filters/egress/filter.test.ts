/**
 * The egress filter as a module: Envoy's link surface, deterministic build, and the plugin
 * configuration exactly as the bootstrap generator writes it (anything else refused).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { IMPORTS, CALLBACKS, ABI_EXPORT } from '../../../host/abi.ts';
import { readSurface } from '../../../host/module.ts';
import { FilterLoadError, loadFilter, type HttpCallRequest } from '../../../host/index.ts';
import { generateBootstrap } from '../../../envoy/bootstrap.ts';
import { bootstrapOptions } from '../../../envoy/options.ts';
import { buildEntry } from '../../../compiler/backend/build.ts';
import { EGRESS_ENTRY, buildEgressFilter, writeEgressFilter } from '../../../compiler/backend/egress.ts';
import { removeDir, tempDir } from '../../support/identity.ts';
import { CARD, egressConfiguration, egressFilter, fakeAgent, httpCluster, text } from './harness.ts';

test('links against exactly Envoy\'s host functions and exports what Envoy calls; no start section', async () => {
  const surface = readSurface(await buildEgressFilter());
  for (const imp of surface.imports) {
    assert.is(imp.kind, 'func');
    assert.ok(Object.hasOwn(IMPORTS[imp.module] ?? {}, imp.name), `${imp.module}.${imp.name} is not registered by Envoy`);
    assert.is(imp.signature, IMPORTS[imp.module][imp.name], imp.name);
  }
  const names = surface.imports.map((i) => i.name);
  for (const needed of ['proxy_http_call', 'proxy_continue_stream', 'proxy_set_effective_context', 'proxy_send_local_response']) assert.ok(names.includes(needed), needed);
  for (const banned of ['abort', 'trace', 'seed']) assert.not.ok(names.includes(banned), banned);
  for (const f of [ABI_EXPORT, 'malloc', 'proxy_on_memory_allocate', '_initialize', 'proxy_on_configure', 'proxy_on_request_headers',
    'proxy_on_request_body', 'proxy_on_http_call_response', 'proxy_on_done', 'proxy_on_delete']) {
    assert.ok(surface.exportedFunctions.has(f), f);
    if (Object.hasOwn(CALLBACKS, f)) assert.is(surface.exportedFunctions.get(f), CALLBACKS[f], f);
  }
  assert.ok(surface.exportedMemories.has('memory'));
  assert.not.ok(surface.hasStart);
});

test('deterministic: a second compilation gives the same bytes; the file is written whole', async () => {
  const first = await buildEgressFilter();
  const again = await buildEntry(EGRESS_ENTRY);
  assert.ok(Buffer.from(first).equals(Buffer.from(again)));
  const dir = tempDir('egress');
  try {
    const out = path.join(dir, 'build', 'egress.wasm');
    const written = await writeEgressFilter(out);
    const bytes = readFileSync(out);
    assert.equal([written.path, written.bytes, written.sha256], [out, first.length, createHash('sha256').update(bytes).digest('hex')]);
    assert.ok(bytes.equals(Buffer.from(first)));
  } finally {
    removeDir(dir);
  }
});

test('consumes the configuration `palisade envoy bootstrap` writes: routes become fingerprint audiences', async () => {
  const dir = tempDir('egress-routes');
  const signer = await fakeAgent((req, res) => {
    req.resume().on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"x.y.z","exp":1}'));
  });
  const seen: HttpCallRequest[] = [];
  const http = httpCluster(signer.origin, seen);
  try {
    const routes = path.join(dir, 'routes.json');
    writeFileSync(routes, JSON.stringify({ card: { url: 'https://10.0.0.7:15006', spiffeId: CARD } }));
    const bootstrap = generateBootstrap(bootstrapOptions({ trustDomain: 'bank.example', routes, signerUrl: `${signer.origin}/v1/fingerprint` })) as any;
    const outbound = bootstrap.static_resources.listeners.find((l: any) => l.name === 'outbound');
    const wasm = outbound.filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.config;
    const filter = await loadFilter(await buildEgressFilter(), { configuration: wasm.configuration.value, clusters: { palisade_signer: http.cluster } });
    try {
      const o = await filter.handleRequest({ method: 'GET', path: '/cards/1', authority: 'card:15001' });
      assert.is(o.kind, 'forward', text(o.body));
      assert.is(JSON.parse(text(seen[0].body)).aud, CARD);
    } finally {
      await filter.close();
    }
  } finally {
    await http.close();
    await signer.close();
    removeDir(dir);
  }
});

const badConfigurations: [string, string | undefined][] = [
  ['none', undefined],
  ['not JSON', 'signer=palisade_signer'],
  ['an unknown member', egressConfiguration('127.0.0.1:1', undefined, { mode: 'dry-run' })],
  ['no targets', JSON.stringify({ signer_cluster: 'c', signer_authority: 'a', signer_path: '/p' })],
  ['no signer cluster', JSON.stringify({ signer_authority: 'a', signer_path: '/p', targets: {} })],
  ['a relative signer path', JSON.stringify({ signer_cluster: 'c', signer_authority: 'a', signer_path: 'v1/fingerprint', targets: {} })],
  ['a target that is not a SPIFFE ID', egressConfiguration('127.0.0.1:1', { card: 'https://card' })],
  ['the same target twice', egressConfiguration('127.0.0.1:1', { card: CARD, CARD: CARD })],
  ['a zero timeout', egressConfiguration('127.0.0.1:1', undefined, { signer_timeout_ms: 0 })],
  ['a fractional timeout', egressConfiguration('127.0.0.1:1', undefined, { signer_timeout_ms: 1.5 })],
  ['a member twice', '{"signer_cluster":"c","signer_cluster":"d","signer_authority":"a","signer_path":"/p","targets":{}}'],
  ['trailing bytes', `${egressConfiguration('127.0.0.1:1')}x`],
];
for (const [what, configuration] of badConfigurations) {
  test(`refuses a configuration with ${what} (Envoy would refuse the filter)`, async () => {
    const wasm = await buildEgressFilter();
    await loadFilter(wasm, { configuration }).then(
      (f) => (f.close(), assert.unreachable('loaded')),
      (err) => assert.instance(err, FilterLoadError),
    );
  });
}

test('an empty target map loads; every request is then 404 unknown_service', async () => {
  const http = httpCluster('http://127.0.0.1:1');
  const filter = await egressFilter(http.cluster, egressConfiguration('127.0.0.1:1', {}, { signer_timeout_ms: 60000 }));
  try {
    const o = await filter.handleRequest({ method: 'GET', path: '/', authority: 'card' });
    assert.equal([o.kind, o.status], ['reply', 404]);
  } finally {
    await filter.close();
    await http.close();
  }
});

test.run();
