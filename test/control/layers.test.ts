/**
 * Layers on the control plane: a root layer's deny reaches a service whose own policy
 * allows the request, through its sidecar, as a new version of the service's policy; the
 * pushed filter is byte for byte what compiling the same layers produces (the call
 * `palisade compile --layer` makes); a rollback of the service cannot lift the layer's deny.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { compileLayers } from '../../compiler/index.ts';
import { PolicyRegistry } from '../../control/policies.ts';
import { buildStats } from '../../control/builds.ts';
import type { Store } from '../../store/store.ts';
import { startEcho, type Echo } from '../agent/sidecar/harness.ts';
import { startPlane, startServiceSidecars, policy, nextReport, CARD, TD, type Plane } from './harness.ts';

const layers = suite('layered policies through the control plane');
let plane: Plane;
let echo: Echo;
let card: Awaited<ReturnType<typeof startServiceSidecars>>;
const cardSource = policy('card', CARD, ['/cards/{id}', '/admin/users']);
const root = `${JSON.stringify({
  palisade: 1, name: 'bank', scope: `spiffe://${TD}/**`,
  rules: [{ id: 'no-admin', effect: 'deny', to: [{ paths: ['/admin/**'] }] }],
}, null, 2)}\n`;

layers.before(async () => {
  plane = await startPlane();
  echo = await startEcho();
  assert.is((await plane.api('PUT', '/v1/policies/card', { body: cardSource })).status, 200);
  card = await startServiceSidecars(plane, CARD, echo.url);
});
layers.after(async () => {
  await card?.close();
  await echo.close();
  await plane.close();
});

layers('a root layer\'s deny applies to a service whose own policy allows the request, as a new version pushed to its sidecar', async () => {
  assert.is(await card.call(0, '/admin/users'), 200, 'the service\'s own policy allows it');
  const pushed = nextReport(card.instances[0]!.subscriber, (r) => r.version === 2);
  const put = await plane.api('PUT', '/v1/policies/bank', { body: root });
  assert.is(put.status, 200, JSON.stringify(put.json));
  assert.equal([put.json.version, put.json.change], [1, 'submit']);
  const report = await pushed;
  assert.is(report.status, 'applied');
  assert.is(await card.call(0, '/admin/users'), 403, 'the root deny wins');
  assert.is(await card.call(0, '/cards/1'), 200);

  const v2 = (await plane.api('GET', '/v1/policies/card/versions/2')).json;
  assert.equal([v2.change, v2.cause, v2.changed_by.name, v2.sha256], ['layer', 'bank v1', 'alice', report.sha256]);
  const cli = await compileLayers([{ file: 'card.policy.json', text: cardSource }, { file: 'bank.policy.json', text: root }]);
  assert.ok(cli.ok);
  assert.is(cli.manifest.wasm.sha256, v2.sha256, 'byte for byte what compiling the same layers makes');
  assert.equal(v2.manifest.layers.map((l: any) => l.sha256), cli.manifest.layers!.map((l) => l.sha256));
  assert.is(v2.manifest.layers.length, 2);
});

layers('rolling the service back recomposes its earlier source with today\'s layers: the deny stays', async () => {
  const before = buildStats();
  const back = await plane.api('POST', '/v1/policies/card/rollback', { body: '{"version":1}' });
  assert.is(back.status, 200);
  assert.is(await card.call(0, '/admin/users'), 403);
  // Version 1's source under today's root layer is what version 2 was built from: that build is reused.
  assert.equal([buildStats().compiled, buildStats().reused], [before.compiled, before.reused + 1]);
  assert.is(back.json.sha256, (await plane.api('GET', '/v1/policies/card/versions/2')).json.sha256);
  const layerBack = nextReport(card.instances[0]!.subscriber, (r) => r.version === 4);
  const bad = await plane.api('PUT', '/v1/policies/bank', { body: root.replace('"deny"', '"allow"') });
  assert.is(bad.status, 400, 'an allow in a layer must say appliesBelow');
  assert.is((await plane.api('GET', '/v1/policies/bank/versions')).json.versions.length, 1, 'nothing recorded');
  assert.ok(bad.json.error.diagnostics.some((d: any) => d.file === 'bank.policy.json' && d.line > 1));
  const wider = root.replace('"/admin/**"', '"/admin/**", "/cards/9"');
  const v2 = await plane.api('PUT', '/v1/policies/bank', { body: wider });
  assert.is(v2.status, 200, JSON.stringify(v2.json));
  await layerBack;
  assert.is(await card.call(0, '/cards/9'), 403, 'a root change rolls out to every service below it');
  assert.is(await card.call(0, '/cards/1'), 200);
});

layers('a service submitted while a layer above it changes is composed with the layer in force, never the one it read before compiling', async () => {
  const store = plane.store;
  const racer = { id: 'racer', name: 'racer', role: 'admin' as const };
  const newerRoot = root.replace('"/admin/**"', '"/admin/**", "/cards/13"');
  let raced = false;
  // The race made deterministic: the layer change commits after the service's compile read the layers, before its commit.
  const racing: Store = {
    kind: store.kind, query: store.query.bind(store), run: store.run.bind(store), notify: store.notify.bind(store),
    migrate: store.migrate.bind(store), listen: store.listen.bind(store), close: store.close.bind(store),
    async transaction(fn) {
      if (!raced) {
        raced = true;
        await new PolicyRegistry(store).submit('bank', newerRoot, racer);
      }
      return store.transaction(fn);
    },
  };
  const submitted = await new PolicyRegistry(racing).submit('card', policy('card', CARD, ['/cards/{id}', '/admin/users', '/cards/13']), racer);
  assert.ok(raced);
  const current = (await plane.api('GET', '/v1/policies/card')).json;
  assert.is(current.version, submitted.version);
  const rootSha = createHash('sha256').update(newerRoot).digest('hex');
  assert.ok(current.manifest.layers.some((l: any) => l.sha256 === rootSha), 'composed with the layer that committed first');
});

layers.run();
