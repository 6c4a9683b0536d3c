/**
 * Two control-plane replicas on one PostgreSQL database: replica A in this process, replica
 * K a `palisade control serve` process. An agent subscribed to K receives a policy PUT to A
 * (LISTEN/NOTIFY through the store); killing K (SIGKILL) sends the agent to A, with a load
 * loop through its sidecar failing no request, and A's next change reaches it. Skipped,
 * loudly, where PostgreSQL's server binaries are missing.
 */
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { openStore } from '../../store/open.ts';
import type { Store } from '../../store/store.ts';
import { findPostgres, startPostgres, type PostgresCluster } from '../support/postgres.ts';
import { palisade, palisadeRun, tempDir, removeDir, type Proc } from '../support/identity.ts';
import { startEcho, type Echo } from '../agent/sidecar/harness.ts';
import { startPlane, startServiceSidecars, policy, nextReport, connected, CARD, CONTROL_ID, type Plane } from '../control/harness.ts';

const test = suite('control plane replicas on PostgreSQL');
const bin = findPostgres('control plane replicas on PostgreSQL');
const it = bin ? test : test.skip;
const ctx = {} as { cluster: PostgresCluster; store: Store; plane: Plane; echo: Echo; home: string; killable: Proc; killableUrl: string };

test.before(async () => {
  if (!bin) return;
  ctx.cluster = await startPostgres(bin);
  const url = await ctx.cluster.createDatabase();
  ctx.store = await openStore(url);
  ctx.plane = await startPlane({ store: ctx.store });
  ctx.echo = await startEcho();
  ctx.home = tempDir('control-replicas');
  const bundle = path.join(ctx.home, 'bundle.pem');
  writeFileSync(bundle, ctx.plane.bundlePem);
  const init = await palisadeRun(['control', 'init', '--dir', ctx.home, '--store', url]);
  assert.is(init.code, 0, init.output);
  const token = (await ctx.plane.caServer.ca.createToken(CONTROL_ID, 60_000)).token;
  ctx.killable = palisade(['control', 'serve', '--dir', ctx.home, '--store', url, '--listen', '127.0.0.1:0', '--ca-url', ctx.plane.caServer.url, '--bundle', bundle, '--token', token]);
  ctx.killableUrl = (await ctx.killable.waitFor(/listening on (https:\/\/\S+)/))[1]!;
});

test.after(async () => {
  await ctx.killable?.stop();
  await ctx.plane?.close();
  await ctx.store?.close();
  await ctx.echo?.close();
  ctx.cluster?.stop();
  if (ctx.home) removeDir(ctx.home);
});

it('a PUT to replica A reaches the agent subscribed to replica K; killing K moves the agent to A with no failed request', async () => {
  const { plane } = ctx;
  assert.is((await plane.api('PUT', '/v1/policies/card', { body: policy('card', CARD, ['/cards/{id}']) })).status, 200);
  const card = await startServiceSidecars(plane, CARD, ctx.echo.url, 1, [ctx.killableUrl, plane.control.url]);
  const { subscriber } = card.instances[0]!;
  const statuses = new Map<number, number>();
  let running = true;
  const loop = async () => {
    while (running) {
      const status = await card.call(0, '/cards/7').catch(() => 0);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  const workers = Array.from({ length: 4 }, loop);
  try {
    assert.is(await card.call(0, '/limits'), 403);
    assert.is(subscriber.connectedTo, ctx.killableUrl, 'subscribed to K, the first in its list');
    const viaNotify = nextReport(subscriber, (r) => r.version === 2);
    const put = await plane.api('PUT', '/v1/policies/card', { body: policy('card', CARD, ['/cards/{id}', '/limits']) }); // to A
    assert.is(put.status, 200);
    const sent = Date.now();
    assert.equal((await viaNotify).sha256, put.json.sha256);
    console.log(`  PUT to replica A → applied by the agent on replica K: ${Date.now() - sent} ms after A answered`);
    assert.is(await card.call(0, '/limits'), 200);

    const failedOver = connected(subscriber, plane.control.url);
    ctx.killable.child.kill('SIGKILL');
    await failedOver;
    assert.is(subscriber.connectedTo, plane.control.url);
    const afterFailover = nextReport(subscriber, (r) => r.version === 3);
    const back = await plane.api('POST', '/v1/policies/card/rollback');
    assert.equal((await afterFailover).sha256, back.json.sha256);
    assert.is(await card.call(0, '/limits'), 403);
  } finally {
    running = false;
    await Promise.all(workers);
    await card.close();
  }
  assert.equal([...statuses.keys()], [200], JSON.stringify([...statuses]));
  assert.ok(statuses.get(200)! > 20);
});

test.run();
