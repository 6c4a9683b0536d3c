/**
 * `palisade control` and `palisade agent --control` as users run them: a control plane
 * process with its own SVID, an operator token from the CLI, an agent process whose
 * embedded sidecar starts with the filter the control plane sends and enforces the next, and
 * that pushes its decisions (with their user), SVID and audit proofs to the Security Pane.
 * One control plane process serves both agents (a `control serve` costs seconds of CPU):
 * the second runs another service, so what the pane shows of it is its own.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';
import { CertificateAuthority } from '../../ca/ca.ts';
import { startCaServer, type CaServer } from '../../ca/server.ts';
import { serverIdentity } from '../../agent/sidecar/peer.ts';
import { palisade, palisadeRun, tempDir, removeDir, eventually, type Proc } from '../support/identity.ts';
import { startEcho, mtlsAgent, call, type Echo } from '../agent/sidecar/harness.ts';
import { policy, CARD, LEDGER, FRONTEND, CONTROL_ID, TD } from '../control/harness.ts';
import { originIdentity } from '../../audit/checkpoint.ts';
import { createIssuer } from '../agent/sidecar/issuer.ts';

const e2e = suite('palisade control');
let dir: string;
let ca: CaServer;
let echo: Echo;
const procs: Proc[] = [];

e2e.before(async () => {
  dir = tempDir('control-e2e');
  await CertificateAuthority.init(path.join(dir, 'ca'), TD);
  ca = await startCaServer({ dir: path.join(dir, 'ca'), port: 0 });
  echo = await startEcho();
});
e2e.after(async () => {
  for (const p of procs) await p.stop();
  await echo.close();
  await ca.close();
  removeDir(dir);
});

const bundle = () => path.join(dir, 'ca', 'bundle.pem');
/** The control plane the first agent's test starts, with its admin token; the pane's test reuses it. */
let plane: { dir: string; url: string; admin: string } | undefined;
const agentArgs = (token: string) => ['agent', '--ca-url', ca.url, '--bundle', bundle(), '--token', token];

e2e('flags that cannot work together are one line and exit 2, before any join token is spent', async () => {
  const token = (await ca.ca.createToken(CARD, 60_000)).token;
  // Independent processes, run at once.
  const [both, noInbound, noPlane, init] = await Promise.all([
    palisadeRun([...agentArgs(token), '--inbound', '127.0.0.1:0', '--app', echo.url, '--control', 'https://127.0.0.1:1', '--filter', 'x.wasm']),
    palisadeRun([...agentArgs(token), '--control', 'https://127.0.0.1:1']),
    palisadeRun(['control', 'token', 'create', '--dir', path.join(dir, 'nothing'), '--role', 'admin']),
    palisadeRun(['control', 'init', '--dir', path.join(dir, 'plane')]),
  ]);
  assert.is(both.code, 2);
  assert.match(both.output, /^palisade: --control and --filter\/--ecds-policy exclude each other[^\n]*\n$/);
  assert.equal([noInbound.code, noInbound.output.trim().split('\n').length], [2, 1]);
  assert.is(noPlane.code, 2);
  assert.is(init.code, 0, init.output);
  const badRole = await palisadeRun(['control', 'token', 'create', '--dir', path.join(dir, 'plane'), '--role', 'root']);
  assert.equal([badRole.code, badRole.output], [2, 'palisade: --role must be admin or viewer\n']);
});

e2e('control serve gets its SVID; a policy PUT through the API reaches an agent\'s sidecar, which enforces it', async () => {
  const planeDir = path.join(dir, 'plane');
  const created = await palisadeRun(['control', 'token', 'create', '--dir', planeDir, '--role', 'admin', '--name', 'ci']);
  assert.is(created.code, 0);
  const admin = /^(pct_\S+)$/m.exec(created.output)![1]!;
  const server = palisade(['control', 'serve', '--dir', planeDir, '--listen', '127.0.0.1:0', '--ca-url', ca.url, '--bundle', bundle(), '--token', (await ca.ca.createToken(CONTROL_ID, 60_000)).token]);
  procs.push(server);
  const url = (await server.waitFor(/listening on (https:\/\/\S+)/))[1]!;
  plane = { dir: planeDir, url, admin };
  const operator = new Agent({ connect: { ca: readFileSync(bundle(), 'utf8'), checkServerIdentity: (_h: string, c: PeerCertificate) => serverIdentity(c, CONTROL_ID, TD) } });
  const put = async (body: string) => {
    const r = await request(`${url}/v1/policies/card`, { method: 'PUT', body, dispatcher: operator, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' } });
    return { status: r.statusCode, json: (await r.body.json()) as any };
  };
  assert.is((await put(policy('card', CARD, ['/cards/{id}']))).status, 200);

  const agent = palisade([...agentArgs((await ca.ca.createToken(CARD, 60_000)).token), '--inbound', '127.0.0.1:0', '--app', echo.url, '--control', url]);
  procs.push(agent);
  const inbound = JSON.parse((await agent.waitFor(/\{[^\n]*"sidecar listening"[^\n]*\}/))[0]).inbound as string;
  const minted = await ca.ca.mint(FRONTEND, 600_000);
  const caller = { spiffeId: FRONTEND, chainPem: minted.svid_pem, privateKey: createPrivateKey(minted.key_pem) as KeyObject, notAfter: new Date(minted.not_after) };
  const dispatcher = mtlsAgent(minted.bundle_pem, caller);
  try {
    assert.is((await call(inbound, dispatcher, caller, { path: '/cards/1', fingerprint: { target: CARD } })).status, 200);
    assert.is((await call(inbound, dispatcher, caller, { path: '/limits', fingerprint: { target: CARD } })).status, 403);
    const v2 = await put(policy('card', CARD, ['/cards/{id}', '/limits']));
    assert.is(v2.status, 200);
    await eventually(async () => (await call(inbound, dispatcher, caller, { path: '/limits', fingerprint: { target: CARD } })).status === 200, 10_000);
    const rollout = await request(`${url}/v1/rollout/card`, { dispatcher: operator, headers: { authorization: `Bearer ${admin}` } });
    const status = (await rollout.body.json()) as any;
    assert.equal([status.converged, status.agents[0].version, status.agents[0].sha256], [true, 2, v2.json.sha256]);
  } finally {
    await dispatcher.close();
    await operator.close();
  }
});

const tokenOf = (output: string) => /^(pct_\S+)$/m.exec(output)![1]!;

e2e('the agent pushes its decisions with their user, its SVID and its audit checkpoint; each entry is proven included', async () => {
  assert.ok(plane, 'the control plane of the previous test is running');
  const { url, admin } = plane;
  const viewer = tokenOf((await palisadeRun(['control', 'token', 'create', '--dir', plane.dir, '--role', 'viewer'])).output);
  const operator = new Agent({ connect: { ca: readFileSync(bundle(), 'utf8'), checkServerIdentity: (_h: string, c: PeerCertificate) => serverIdentity(c, CONTROL_ID, TD) } });
  const api = async (method: 'GET' | 'PUT', route: string, token: string, body?: string) => {
    const r = await request(`${url}${route}`, { method, body, dispatcher: operator, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
    return (await r.body.json()) as any;
  };
  assert.is((await api('PUT', '/v1/policies/ledger', admin, policy('ledger', LEDGER, ['/cards/{id}']))).version, 1);

  // An end user's identity context, verified by the sidecar against the issuer's JWKS.
  const issuer = await createIssuer();
  const jwks = path.join(dir, 'jwks.json');
  writeFileSync(jwks, JSON.stringify(issuer.jwks));
  const agent = palisade([
    'agent', '--ca-url', ca.url, '--bundle', bundle(), '--token', (await ca.ca.createToken(LEDGER, 60_000)).token,
    '--inbound', '127.0.0.1:0', '--app', echo.url, '--control', url, '--audit-dir', path.join(dir, 'audit'),
    '--identity-issuer', issuer.iss, '--identity-audience', issuer.aud, '--identity-jwks', jwks,
  ]);
  procs.push(agent);
  const ready = JSON.parse((await agent.waitFor(/\{[^\n]*"agent ready"[^\n]*\}/))[0]);
  const inbound = JSON.parse((await agent.waitFor(/\{[^\n]*"sidecar listening"[^\n]*\}/))[0]).inbound as string;
  const minted = await ca.ca.mint(FRONTEND, 600_000);
  const caller = { spiffeId: FRONTEND, chainPem: minted.svid_pem, privateKey: createPrivateKey(minted.key_pem) as KeyObject, notAfter: new Date(minted.not_after) };
  const dispatcher = mtlsAgent(minted.bundle_pem, caller);
  try {
    const alice = await issuer.token({ sub: 'alice', client_id: 'mobile-app' });
    assert.is((await call(inbound, dispatcher, caller, { path: '/cards/1', headers: { authorization: `Bearer ${alice}` }, fingerprint: { target: LEDGER } })).status, 200);
    assert.is((await call(inbound, dispatcher, caller, { path: '/limits', fingerprint: { target: LEDGER } })).status, 403);

    // The decisions, as a viewer sees them; the user filter finds alice's.
    const listed = await eventually(async () => {
      const page = await api('GET', `/v1/dashboard/decisions?service=${encodeURIComponent(LEDGER)}`, viewer);
      return page.decisions?.length === 2 ? page.decisions : undefined;
    }, 15_000);
    assert.equal(listed.map((d: any) => [d.path, d.decision, d.caller]), [['/limits', 'deny', FRONTEND], ['/cards/1', 'allow', FRONTEND]]);
    const byUser = (await api('GET', '/v1/dashboard/decisions?user=alice', viewer)).decisions;
    assert.equal(byUser.map((d: any) => [d.path, d.user, d.client_id]), [['/cards/1', 'alice', 'mobile-app']]);
    assert.is(listed[0].user, null);

    // The instance: the SVID the agent holds, the version it runs, its audit log's checkpoint verified.
    const instance = await eventually(async () => {
      const ledger = (await api('GET', '/v1/dashboard/services', viewer)).services.find((s: any) => s.spiffe_id === LEDGER);
      return ledger?.instances[0]?.audit.result === 'verified' && ledger.instances[0].audit.size >= 2 ? ledger.instances[0] : undefined;
    }, 15_000);
    assert.equal([instance.svid.serial, instance.svid.not_after, instance.policy.version, instance.renewal.status],
      [ready.serial, new Date(ready.not_after).toISOString(), 1, 'ok']);
    assert.is(originIdentity(instance.audit.origin), LEDGER);

    // Each decision's audit entry, proven included under that checkpoint.
    const details: any[] = await eventually(async () => {
      const all = await Promise.all(listed.map((d: any) => api('GET', `/v1/dashboard/decisions/${d.id}`, viewer)));
      return all.every((d: any) => d.audit_inclusion.status === 'included') ? all : undefined;
    }, 15_000) as any[];
    assert.equal(details.map((d: any) => d.audit_index).sort(), [0, 1]);
    for (const d of details) assert.ok(d.audit_inclusion.checkpoint_size > d.audit_index);
  } finally {
    await dispatcher.close();
    await operator.close();
  }
});

e2e.run();
