/**
 * The "Done when", through real sidecars: a policy PUT to the control plane is
 * enforced by the subscribed sidecars while a load loop runs through the switch with no
 * failed request; a rollback puts the previous sha256 back on every agent and the rollout
 * says so.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startEcho, type Echo } from '../agent/sidecar/harness.ts';
import { startPlane, startServiceSidecars, policy, nextReport, CARD, type Plane } from './harness.ts';

const rollout = suite('policy rollout through the control plane');
let plane: Plane;
let echo: Echo;
let card: Awaited<ReturnType<typeof startServiceSidecars>>;

rollout.before(async () => {
  plane = await startPlane();
  echo = await startEcho();
  assert.is((await plane.api('PUT', '/v1/policies/card', { body: policy('card', CARD, ['/cards/{id}']) })).status, 200);
  card = await startServiceSidecars(plane, CARD, echo.url, 2); // two replicas of the card service
});

rollout.after(async () => {
  await card?.close();
  await echo.close();
  await plane.close();
});

rollout('a PUT is enforced by every subscribed sidecar with no failed request under load; rollback restores the previous sha256 everywhere', async () => {
  const replicas = card.instances.map((_, i) => i);
  const statuses = new Map<number, number>();
  let running = true;
  const loop = async (worker: number) => {
    while (running) {
      const status = await card.call(worker % replicas.length, '/cards/42').catch(() => 0);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  const workers = Array.from({ length: 8 }, (_, w) => loop(w));
  try {
    for (const i of replicas) assert.is(await card.call(i, '/limits'), 403, 'v1 does not allow /limits');
    const v1 = (await plane.api('GET', '/v1/policies/card')).json;

    const applied = card.instances.map((c) => nextReport(c.subscriber, (r) => r.version === 2));
    const put = await plane.api('PUT', '/v1/policies/card', { body: policy('card', CARD, ['/cards/{id}', '/limits']) });
    assert.is(put.status, 200);
    for (const report of await Promise.all(applied)) assert.equal([report.status, report.sha256], ['applied', put.json.sha256]);
    for (const i of replicas) assert.is(await card.call(i, '/limits'), 200, 'v2 is enforced');

    const restored = card.instances.map((c) => nextReport(c.subscriber, (r) => r.version === 3));
    const back = await plane.api('POST', '/v1/policies/card/rollback');
    assert.equal([back.status, back.json.sha256], [200, v1.sha256]);
    for (const report of await Promise.all(restored)) assert.equal([report.status, report.sha256], ['applied', v1.sha256]);
    for (const i of replicas) assert.is(await card.call(i, '/limits'), 403, 'v1 again');
    for (const c of card.instances) assert.is(c.subscriber.running?.sha256, v1.sha256);

    const status = (await plane.api('GET', '/v1/rollout/card', { token: plane.viewer })).json;
    assert.is(status.converged, true);
    assert.equal(status.agents.map((a: any) => [a.version, a.sha256]), replicas.map(() => [3, v1.sha256]));
  } finally {
    running = false;
    await Promise.all(workers);
  }
  assert.equal([...statuses.keys()], [200], `every request through the switch succeeded: ${JSON.stringify([...statuses])}`);
  assert.ok(statuses.get(200)! > 50, 'the load loop ran throughout');
});

rollout.run();
