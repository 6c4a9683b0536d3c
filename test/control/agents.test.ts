/**
 * The agent API with real agents: each subscribes with the SVID the CA gave it over mTLS
 * and is sent the filter of its own service only; bytes that do not match their pinned
 * sha256 are refused by the agent and reported refused; the rollout shows what every agent
 * runs and when it last reported.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { Agent, request } from 'undici';
import { ControlSubscriber, type VerifiedFilter } from '../../agent/control/subscriber.ts';
import { REPORTS_PATH, STREAM_PATH } from '../../agent/control/protocol.ts';
import { CertificateAuthority } from '../../ca/ca.ts';
import { tempDir, removeDir } from '../support/identity.ts';
import { startPlane, policy, nextReport, connected, CARD, LEDGER, type Plane } from './harness.ts';

const agents = suite('control plane agent API');
let plane: Plane;
const subscribers: ControlSubscriber[] = [];

/** A real agent for `spiffeId` subscribed to the control plane; what it was asked to apply is kept. */
async function subscribed(spiffeId: string, outcome: (f: VerifiedFilter) => { ok: true } | { ok: false; reason: string } = () => ({ ok: true })) {
  const identity = await plane.join(spiffeId);
  const applied: VerifiedFilter[] = [];
  const subscriber = new ControlSubscriber({
    urls: [plane.control.url], identity, apply: async (f) => (applied.push(f), outcome(f)),
  });
  subscribers.push(subscriber);
  return { subscriber, applied, identity };
}

agents.before(async () => {
  plane = await startPlane({ revocation: { refreshMs: 200 } });
  assert.is((await plane.api('PUT', '/v1/policies/card', { body: policy('card', CARD, ['/cards/{id}']) })).status, 200);
});
agents.after(async () => {
  for (const s of subscribers) await s.close();
  await plane.close();
});

agents('an agent receives the filter of the service its SVID names, and never another service\'s', async () => {
  const card = await subscribed(CARD);
  const ledger = await subscribed(LEDGER);
  const cardReport = nextReport(card.subscriber);
  const ledgerConnected = connected(ledger.subscriber);
  card.subscriber.start();
  ledger.subscriber.start();
  const report = await cardReport;
  await ledgerConnected;
  const current = (await plane.api('GET', '/v1/policies/card')).json;
  assert.equal(report, { policy: 'card', version: 1, sha256: current.sha256, status: 'applied' });
  assert.equal(card.applied.map((f) => [f.policy, f.sha256]), [['card', current.sha256]]);
  // The ledger's agent is connected and was told that no policy protects it: card's filter never reached it.
  assert.equal(ledger.applied, []);
  // A change to card's policy goes to card's agent only; ledger's own policy goes to ledger's only.
  const next = nextReport(card.subscriber, (r) => r.version === 2);
  const ledgerGot = nextReport(ledger.subscriber);
  assert.is((await plane.api('PUT', '/v1/policies/card', { body: policy('card', CARD, ['/cards/{id}', '/limits']) })).status, 200);
  assert.is((await plane.api('PUT', '/v1/policies/ledger', { body: policy('ledger', LEDGER, ['/balances/{id}']) })).status, 200);
  await next;
  await ledgerGot;
  assert.equal(card.applied.map((f) => [f.policy, f.version]), [['card', 1], ['card', 2]]);
  assert.equal(ledger.applied.map((f) => [f.policy, f.version]), [['ledger', 1]]);
  const wasm = Buffer.from(ledger.applied[0]!.wasm);
  assert.not.ok(card.applied.some((f) => Buffer.from(f.wasm).equals(wasm)));
});

agents('an agent cannot report on another service\'s policy, and the stream needs an SVID of this trust domain', async () => {
  const ledgerId = await plane.join(LEDGER);
  const svid = ledgerId.svid();
  const asLedger = new Agent({ connect: { ca: plane.bundlePem, cert: svid.chainPem, key: svid.keyPem, rejectUnauthorized: false } });
  const current = (await plane.api('GET', '/v1/policies/card')).json;
  const forged = await request(`${plane.control.url}${REPORTS_PATH}`, {
    method: 'POST', dispatcher: asLedger, headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ policy: 'card', version: current.version, sha256: current.sha256, status: 'refused', reason: 'forged' }),
  });
  assert.is(forged.statusCode, 403);
  assert.is((await forged.body.json() as any).error.code, 'forbidden');
  await asLedger.close();
  const rollout = (await plane.api('GET', '/v1/rollout/card')).json;
  assert.not.ok(rollout.agents.some((a: any) => a.spiffe_id === LEDGER));

  // No client certificate, and a certificate from another CA for CARD's very ID.
  const otherDir = tempDir('other-ca');
  await CertificateAuthority.init(`${otherDir}/ca`, 'bank.example');
  const other = await CertificateAuthority.open(`${otherDir}/ca`);
  const minted = await other.mint(CARD, 60_000);
  await other.close();
  removeDir(otherDir);
  for (const connect of [{}, { cert: minted.svid_pem, key: minted.key_pem }]) {
    const dispatcher = new Agent({ connect: { ...connect, rejectUnauthorized: false } });
    const r = await request(`${plane.control.url}${STREAM_PATH}`, { dispatcher });
    assert.is(r.statusCode, 401);
    assert.is((await r.body.json() as any).error.code, 'unauthenticated');
    await dispatcher.close();
  }
});

agents('an agent whose SVID is revoked is refused, and the stream it holds open is cut', async () => {
  const stolen = (await plane.join(CARD)).svid();
  const thief = new Agent({ connect: { ca: plane.bundlePem, cert: stolen.chainPem, key: stolen.keyPem, rejectUnauthorized: false } });
  try {
    const stream = await request(`${plane.control.url}${STREAM_PATH}`, { dispatcher: thief });
    assert.is(stream.statusCode, 200);
    const closed = new Promise<string>((resolve) => {
      stream.body.on('error', () => resolve('cut')).on('end', () => resolve('ended')).resume();
    });
    await plane.caServer.ca.revoke(stolen.serial);
    assert.is(await Promise.race([closed, new Promise<string>((r) => setTimeout(r, 5_000, 'still open after 5 s'))]), 'cut');
    const current = (await plane.api('GET', '/v1/policies/card')).json;
    const report = await request(`${plane.control.url}${REPORTS_PATH}`, {
      method: 'POST', dispatcher: thief, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ policy: 'card', version: current.version, sha256: current.sha256, status: 'applied' }),
    });
    assert.is(report.statusCode, 401);
    assert.match((await report.body.json() as any).error.message, /revoked/);
  } finally {
    await thief.destroy(); // close() would wait for a stream that was not cut
  }
});

agents('bytes that do not match the pinned sha256 are refused by the agent and reported refused', async () => {
  const before = (await plane.api('GET', '/v1/policies/ledger')).json;
  // Someone with write access to the database swaps the stored filter of the current version.
  const other = Buffer.from((await plane.store.query<{ wasm: string }>("SELECT wasm FROM control_policy_versions WHERE name = 'card' AND version = 1"))[0]!.wasm, 'base64');
  await plane.store.run("UPDATE control_policy_versions SET wasm = $1 WHERE name = 'ledger' AND version = $2", [other.toString('base64'), before.version]);
  const ledger = await subscribed(LEDGER);
  const reported = nextReport(ledger.subscriber);
  ledger.subscriber.start();
  const report = await reported;
  assert.is(report.status, 'refused');
  assert.match(report.reason!, /^sha256_mismatch: pinned [0-9a-f]{64}, received bytes hash to [0-9a-f]{64}$/);
  assert.ok(report.reason!.includes(createHash('sha256').update(other).digest('hex')));
  assert.equal(ledger.applied, [], 'nothing was handed to the sidecar');
  assert.is(ledger.subscriber.running, undefined);
  const rollout = (await plane.api('GET', '/v1/rollout/ledger', { token: plane.viewer })).json;
  const entry = rollout.agents.find((a: any) => a.instance === ledger.subscriber.instance);
  assert.equal([entry.version, entry.sha256, entry.last_report.status], [null, null, 'refused']);
  assert.match(entry.last_report.reason, /^sha256_mismatch/);
  assert.is(rollout.converged, false);
});

agents('the rollout shows, per agent, the version and sha256 it runs and when it last reported', async () => {
  const rollout = (await plane.api('GET', '/v1/rollout/card', { token: plane.viewer })).json;
  const current = (await plane.api('GET', '/v1/policies/card')).json;
  assert.is(rollout.agents.length, 1);
  const [agent] = rollout.agents;
  assert.equal([agent.spiffe_id, agent.version, agent.sha256, agent.last_report.status], [CARD, current.version, current.sha256, 'applied']);
  assert.ok(Date.now() - Date.parse(agent.reported_at) < 60_000);
  assert.is(rollout.converged, true);
});

agents.run();
