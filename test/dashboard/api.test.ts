/**
 * The Security Pane's API on a real control plane with real agents (CA, SVIDs, mTLS): an
 * agent's decisions land only in its own service's view, the SVID shown is the certificate
 * it presented, a forged or rewritten audit checkpoint is reported failed and stays so, the
 * pages are served under a CSP without inline code, and no other web origin gets in.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';
import { DecisionPusher, DECISIONS_PATH, type DecisionBatch } from '../../agent/control/decisions.ts';
import { AGENT_INSTANCE_HEADER } from '../../agent/control/protocol.ts';
import type { IdentityAgent } from '../../agent/identity/agent.ts';
import type { DecisionRecord } from '../../agent/sidecar/decision-log.ts';
import { tlsMaterial } from '../../agent/sidecar/tls.ts';
import { serverIdentity } from '../../agent/sidecar/peer.ts';
import { signCheckpoint } from '../../audit/checkpoint.ts';
import { AuditLog } from '../../audit/log.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dashboard } from '../../dashboard/routes.ts';
import { startPlane, policy, CARD, LEDGER, FRONTEND, CONTROL_ID, TD, type Plane } from '../control/harness.ts';

const api = suite('dashboard API');
let plane: Plane;
let card: IdentityAgent, ledger: IdentityAgent;

const record = (target: string, extra: Partial<DecisionRecord> = {}): DecisionRecord => ({
  trace_id: 'a'.repeat(32), request_id: 'r1', caller: FRONTEND, target, method: 'GET', path: '/cards/1',
  decision: 'deny', rule: 'no-frontend', mode: 'enforce', status: 403, reason: 'deny_rule', user: null, client_id: null, audit_index: null, latency_ms: 1, ...extra,
});

/** POSTs a batch as `agent` over mTLS, as the pusher does, with whatever body the test forges. */
async function push(agent: IdentityAgent, batch: Partial<DecisionBatch>, instance = 'i1') {
  const dispatcher = new Agent({ connect: { ...tlsMaterial(agent), checkServerIdentity: (_h: string, c: PeerCertificate) => serverIdentity(c, CONTROL_ID, TD) } });
  try {
    const body: DecisionBatch = { renewal: { status: 'ok', consecutive_failures: 0, last_error: null }, policy: null, dropped: 0, audit: null, decisions: [], proofs: [], ...batch };
    const r = await request(`${plane.control.url}${DECISIONS_PATH}`, {
      method: 'POST', dispatcher, body: JSON.stringify(body), headers: { 'content-type': 'application/json', [AGENT_INSTANCE_HEADER]: instance },
    });
    const text = await r.body.text();
    return { status: r.statusCode, json: text ? JSON.parse(text) : undefined };
  } finally {
    await dispatcher.close();
  }
}

const checkpoint = (signer: IdentityAgent, origin: string, size: number, root: number) => ({
  checkpoint: signCheckpoint({ origin, size, root: Buffer.alloc(32, root), time: Date.now() }, signer.svid().privateKey),
  chain: signer.svid().chainPem,
});

api.before(async () => {
  plane = await startPlane({ plugins: [dashboard] });
  assert.is((await plane.api('PUT', '/v1/policies/card', { body: policy('card', CARD, ['/cards/{id}']) })).status, 200);
  card = await plane.join(CARD);
  ledger = await plane.join(LEDGER);
});
api.after(async () => plane?.close());

api('an agent\'s decisions land in its own service\'s view only: the ledger agent cannot write decisions at card', async () => {
  const pusher = new DecisionPusher({ url: () => plane.control.url, identity: ledger, instance: 'ledger-1', running: () => undefined });
  pusher.add(record(CARD, { path: '/forged' }));
  pusher.add(record(LEDGER, { path: '/balances/1' }));
  await pusher.flush();
  await pusher.close();
  const atCard = await plane.api('GET', `/v1/dashboard/decisions?service=${encodeURIComponent(CARD)}`, { token: plane.viewer });
  assert.is(atCard.status, 200);
  assert.equal(atCard.json.decisions, []);
  const atLedger = await plane.api('GET', `/v1/dashboard/decisions?service=${encodeURIComponent(LEDGER)}`, { token: plane.viewer });
  assert.equal(atLedger.json.decisions.map((d: { path: string }) => d.path), ['/balances/1']);
});

api('the SVID serial and expiry shown are those of the certificate the agent presented', async () => {
  assert.is((await push(card, { decisions: [record(CARD)] }, 'card-1')).status, 204);
  const { json } = await plane.api('GET', '/v1/dashboard/services', { token: plane.viewer });
  const service = json.services.find((s: { spiffe_id: string }) => s.spiffe_id === CARD);
  assert.is(service.policy.name, 'card');
  const instance = service.instances.find((i: { instance: string }) => i.instance === 'card-1');
  assert.is(instance.svid.serial, card.svid().serial);
  assert.is(instance.svid.not_after, card.svid().notAfter.toISOString());
  assert.is(instance.warning, null);
});

api('a renewal failure the agent reports is a warning on its instance', async () => {
  await push(card, { renewal: { status: 'failed', consecutive_failures: 3, last_error: 'CA unreachable' } }, 'card-2');
  const { json } = await plane.api('GET', '/v1/dashboard/services', { token: plane.viewer });
  const instance = json.services.find((s: { spiffe_id: string }) => s.spiffe_id === CARD).instances.find((i: { instance: string }) => i.instance === 'card-2');
  assert.match(instance.warning, /renewal failed 3 time\(s\): CA unreachable/);
});

api('a checkpoint signed with another agent\'s SVID fails verification, and the failure sticks', async () => {
  const audit = async (instance: string) => {
    const { json } = await plane.api('GET', '/v1/dashboard/services', { token: plane.viewer });
    return json.services.find((s: { spiffe_id: string }) => s.spiffe_id === LEDGER).instances.find((i: { instance: string }) => i.instance === instance).audit;
  };
  await push(ledger, { audit: checkpoint(ledger, `${LEDGER}#a`, 5, 1) }, 'ledger-a');
  assert.is((await audit('ledger-a')).result, 'verified');
  assert.is((await audit('ledger-a')).size, 5);
  // card's key signs a checkpoint claiming to be ledger's log, pushed over ledger's connection.
  await push(ledger, { audit: checkpoint(card, `${LEDGER}#a`, 6, 2) }, 'ledger-a');
  const forged = await audit('ledger-a');
  assert.is(forged.result, 'failed');
  assert.match(forged.reason, /not by the log's agent/);
  assert.is(forged.size, 5, 'the last good checkpoint stays shown');
  await push(ledger, { audit: checkpoint(ledger, `${LEDGER}#a`, 7, 3) }, 'ledger-a');
  assert.is((await audit('ledger-a')).result, 'failed');
});

api('a log that shrinks or changes its root at the same size is reported rewritten', async () => {
  const audit = async (instance: string) => {
    const { json } = await plane.api('GET', '/v1/dashboard/services', { token: plane.viewer });
    return json.services.find((s: { spiffe_id: string }) => s.spiffe_id === LEDGER).instances.find((i: { instance: string }) => i.instance === instance).audit;
  };
  await push(ledger, { audit: checkpoint(ledger, `${LEDGER}#b`, 9, 1) }, 'ledger-b');
  await push(ledger, { audit: checkpoint(ledger, `${LEDGER}#b`, 4, 1) }, 'ledger-b');
  assert.match((await audit('ledger-b')).reason, /shrank from 9 to 4/);
  await push(ledger, { audit: checkpoint(ledger, `${LEDGER}#c`, 9, 1) }, 'ledger-c');
  await push(ledger, { audit: checkpoint(ledger, `${LEDGER}#c`, 9, 2) }, 'ledger-c');
  assert.match((await audit('ledger-c')).reason, /another root for the same 9 entries/);
});

api('an audit entry is included in checkpoint N only by a real proof of that decision\'s own entry; a forged proof or index is refused', async () => {
  // card's real audit log: two entries, for requests ra and rb, under one signed checkpoint.
  const dir = mkdtempSync(join(tmpdir(), 'palisade-pane-audit-'));
  const log = AuditLog.open({ dir, signer: card });
  try {
    const decided = (request_id: string) => ({
      time: new Date().toISOString(), trace_id: 'a'.repeat(32), request_id, service: CARD, caller: { id: FRONTEND, serial: '1', cert: 'x' }, user: null,
      method: 'GET', path: '/cards/1', decision: 'deny', status: 403, rule: 'no-frontend', mode: 'enforce', reason: 'deny_rule', policy: null, fingerprint: null,
    });
    const [a, b] = await Promise.all([log.append(decided('ra')), log.append(decided('rb'))]);
    await log.checkpoint();
    const cp = log.latestCheckpoint()!;
    const audit = { checkpoint: cp.text, chain: cp.chainPem };
    const path = (index: number) => log.tree.inclusionProof(index, 2).map((h) => h.toString('base64'));
    const detail = async (request_id: string) => {
      const { json } = await plane.api('GET', '/v1/dashboard/decisions?limit=200', { token: plane.viewer });
      const found = json.decisions.find((d: { request_id: string }) => d.request_id === request_id);
      return (await plane.api('GET', `/v1/dashboard/decisions/${found.id}`, { token: plane.viewer })).json.audit_inclusion;
    };

    // Pushed before any checkpoint covers them: pending.
    assert.is((await push(card, { decisions: [record(CARD, { request_id: 'ra', audit_index: a.seq }), record(CARD, { request_id: 'rb', audit_index: b.seq }), record(CARD, { request_id: 'rz', audit_index: 7 })] }, 'audited')).status, 204);
    assert.equal(await detail('ra'), { status: 'pending', checkpoint_size: null, reason: null });
    // ra's real proof; rb's audit path tampered with.
    const forged = path(b.seq).map(() => Buffer.alloc(32, 7).toString('base64'));
    assert.is((await push(card, { audit, proofs: [{ index: a.seq, entry: a.line, proof: path(a.seq) }, { index: b.seq, entry: b.line, proof: forged }] }, 'audited')).status, 204);
    assert.equal(await detail('ra'), { status: 'included', checkpoint_size: 2, reason: null });
    assert.is((await detail('rb')).status, 'refused');
    assert.match((await detail('rb')).reason, /does not lead to the verified checkpoint of 2 entries/);
    assert.is((await detail('rz')).status, 'pending', 'no proof for it yet');
    // A decision pointed at another request's entry (ra's, with its real proof): refused.
    assert.is((await push(card, { audit, decisions: [record(CARD, { request_id: 'rc', audit_index: a.seq })], proofs: [{ index: a.seq, entry: a.line, proof: path(a.seq) }] }, 'audited-2')).status, 204);
    assert.match((await detail('rc')).reason, /request_id is not this decision's/);
    // An audit path longer than any tree's is not a batch.
    assert.is((await push(card, { proofs: [{ index: 0, entry: a.line, proof: Array(64).fill('') }] }, 'audited')).status, 400);
  } finally {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

api('a batch that is not one is a 400 JSON error; an operator token is not an agent', async () => {
  const bad = await push(card, { decisions: [{ target: CARD } as never] });
  assert.is(bad.status, 400);
  assert.is(bad.json.error.code, 'bad_request');
  const big = await push(card, { decisions: Array.from({ length: 501 }, () => record(CARD)) });
  assert.is(big.status, 400);
  const asOperator = await plane.api('POST', DECISIONS_PATH, { body: '{}' });
  assert.is(asOperator.status, 401);
  assert.is(asOperator.json.error.code, 'unauthenticated');
});

api('viewers read the pane\'s API, no token reads nothing, and viewers change nothing', async () => {
  for (const path of ['/v1/dashboard/services', '/v1/dashboard/graph', '/v1/dashboard/decisions', '/v1/policies']) {
    assert.is((await plane.api('GET', path, { token: plane.viewer })).status, 200, path);
    const none = await plane.api('GET', path, { token: '' });
    assert.is(none.status, 401, path);
    assert.is(none.json.error.code, 'unauthorized');
  }
  const put = await plane.api('PUT', '/v1/policies/card', { token: plane.viewer, body: policy('card', CARD, ['/x']) });
  assert.is(put.status, 403);
});

api('the pages need no token, carry a CSP without unsafe-inline, and hold no inline script or style', async () => {
  const html = await request(`${plane.control.url}/dashboard/`, { dispatcher: new Agent({ connect: { rejectUnauthorized: false } }) });
  const text = await html.body.text();
  assert.is(html.statusCode, 200);
  const csp = String(html.headers['content-security-policy']);
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /style-src 'self'/);
  assert.not.match(csp, /unsafe-inline|unsafe-eval/);
  assert.not.match(text, /<script>|<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=/i);
  assert.is((await plane.api('GET', '/dashboard/..%2F..%2Fpackage.json', { token: '' })).status, 404);
});

api('a request from another web origin is refused; the pane\'s own origin is not', async () => {
  const own = await plane.api('GET', '/v1/dashboard/services', { token: plane.viewer, headers: { origin: plane.control.url } });
  assert.is(own.status, 200);
  for (const origin of ['https://evil.example', 'null', plane.control.url.replace('https:', 'http:'), `${plane.control.url}.evil.example`]) {
    const r = await plane.api('GET', '/v1/dashboard/services', { token: plane.viewer, headers: { origin } });
    assert.is(r.status, 403, origin);
    assert.is(r.json.error.code, 'bad_origin');
  }
});

api('list answers are bounded: limit above the page maximum is a 400, the graph window too', async () => {
  assert.is((await plane.api('GET', '/v1/dashboard/decisions?limit=1000', { token: plane.viewer })).json.error.code, 'bad_request');
  assert.is((await plane.api('GET', '/v1/dashboard/graph?window=-1', { token: plane.viewer })).status, 400);
  assert.is((await plane.api('GET', '/v1/dashboard/decisions/999999', { token: plane.viewer })).status, 404);
});

api.run();
