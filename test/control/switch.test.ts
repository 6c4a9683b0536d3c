/**
 * The "Done when", through real sidecars: a policy PUT to the control plane is
 * enforced by the subscribed sidecar while a load loop runs through the switch with no
 * failed request; a rollback puts the previous sha256 back on every agent and the rollout
 * says so.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Pool } from 'undici';
import { ControlSubscriber } from '../../agent/control/subscriber.ts';
import { ControlledSidecar } from '../../agent/control/sidecar.ts';
import { startSidecar, type Sidecar } from '../../agent/sidecar/index.ts';
import { startEcho, captureLog, type Echo } from '../agent/sidecar/harness.ts';
import { startPlane, policy, nextReport, CARD, FRONTEND, type Plane } from './harness.ts';

const rollout = suite('policy rollout through the control plane');
let plane: Plane;
let echo: Echo;
let frontend: Sidecar;
const cards: { subscriber: ControlSubscriber; sidecar: ControlledSidecar }[] = [];
const log = captureLog();

rollout.before(async () => {
  plane = await startPlane();
  echo = await startEcho();
  assert.is((await plane.api('PUT', '/v1/policies/card', { body: policy('card', CARD, ['/cards/{id}']) })).status, 200);
  // Two replicas of the card service, each its own agent and sidecar.
  for (let i = 0; i < 2; i++) {
    const identity = await plane.join(CARD);
    const sidecar = new ControlledSidecar((filter) => startSidecar({ identity, inbound: { app: echo.url, filter }, logger: log.logger }));
    const subscriber = new ControlSubscriber({ urls: [plane.control.url], identity, apply: sidecar.apply });
    cards.push({ subscriber, sidecar });
    subscriber.start();
  }
  const inbound = await Promise.all(cards.map((c) => c.sidecar.ready));
  frontend = await startSidecar({
    identity: await plane.join(FRONTEND),
    outbound: { routes: Object.fromEntries(inbound.map((s, i) => [`card${i}`, { url: s.inbound!.url, spiffeId: CARD }])) },
    logger: log.logger,
  });
});

rollout.after(async () => {
  await frontend?.close();
  for (const c of cards) {
    await c.subscriber.close();
    await c.sidecar.close();
  }
  await echo.close();
  await plane.close();
});

/** GET through the frontend's outbound sidecar to card replica `i`. */
async function call(pool: Pool, i: number, path: string): Promise<number> {
  const r = await pool.request({ path, method: 'GET', headers: { host: `card${i}` } });
  await r.body.dump();
  return r.statusCode;
}

rollout('a PUT is enforced by every subscribed sidecar with no failed request under load; rollback restores the previous sha256 everywhere', async () => {
  const pool = new Pool(frontend.outbound!.url, { connections: 16 });
  const statuses = new Map<number, number>();
  let running = true;
  const loop = async (worker: number) => {
    while (running) {
      const status = await call(pool, worker % cards.length, '/cards/42').catch(() => 0);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  const workers = Array.from({ length: 8 }, (_, w) => loop(w));
  try {
    for (let i = 0; i < cards.length; i++) assert.is(await call(pool, i, '/limits'), 403, 'v1 does not allow /limits');
    const v1 = (await plane.api('GET', '/v1/policies/card')).json;

    const applied = cards.map((c) => nextReport(c.subscriber, (r) => r.version === 2));
    const put = await plane.api('PUT', '/v1/policies/card', { body: policy('card', CARD, ['/cards/{id}', '/limits']) });
    assert.is(put.status, 200);
    for (const report of await Promise.all(applied)) assert.equal([report.status, report.sha256], ['applied', put.json.sha256]);
    for (let i = 0; i < cards.length; i++) assert.is(await call(pool, i, '/limits'), 200, 'v2 is enforced');

    const restored = cards.map((c) => nextReport(c.subscriber, (r) => r.version === 3));
    const back = await plane.api('POST', '/v1/policies/card/rollback');
    assert.equal([back.status, back.json.sha256], [200, v1.sha256]);
    for (const report of await Promise.all(restored)) assert.equal([report.status, report.sha256], ['applied', v1.sha256]);
    for (let i = 0; i < cards.length; i++) assert.is(await call(pool, i, '/limits'), 403, 'v1 again');
    for (const c of cards) assert.is(c.subscriber.running?.sha256, v1.sha256);

    const status = (await plane.api('GET', '/v1/rollout/card', { token: plane.viewer })).json;
    assert.is(status.converged, true);
    assert.equal(status.agents.map((a: any) => [a.version, a.sha256]), cards.map(() => [3, v1.sha256]));
  } finally {
    running = false;
    await Promise.all(workers);
    await pool.close();
  }
  assert.equal([...statuses.keys()], [200], `every request through the switch succeeded: ${JSON.stringify([...statuses])}`);
  assert.ok(statuses.get(200)! > 50, 'the load loop ran throughout');
});

rollout.run();
