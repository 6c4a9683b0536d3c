/**
 * `palisade control` and `palisade agent --control` as users run them: a control plane
 * process with its own SVID, an operator token from the CLI, an agent process whose
 * embedded sidecar starts with the filter the control plane sends and enforces the next.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';
import { CertificateAuthority } from '../../ca/ca.ts';
import { startCaServer, type CaServer } from '../../ca/server.ts';
import { serverIdentity } from '../../agent/sidecar/peer.ts';
import { palisade, palisadeRun, tempDir, removeDir, eventually, type Proc } from '../support/identity.ts';
import { startEcho, mtlsAgent, call, type Echo } from '../agent/sidecar/harness.ts';
import { policy, CARD, FRONTEND, CONTROL_ID, TD } from '../control/harness.ts';

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
const agentArgs = (token: string) => ['agent', '--ca-url', ca.url, '--bundle', bundle(), '--token', token];

e2e('flags that cannot work together are one line and exit 2, before any join token is spent', async () => {
  const token = (await ca.ca.createToken(CARD, 60_000)).token;
  const both = await palisadeRun([...agentArgs(token), '--inbound', '127.0.0.1:0', '--app', echo.url, '--control', 'https://127.0.0.1:1', '--filter', 'x.wasm']);
  assert.is(both.code, 2);
  assert.match(both.output, /^palisade: --control and --filter\/--ecds-policy exclude each other[^\n]*\n$/);
  const noInbound = await palisadeRun([...agentArgs(token), '--control', 'https://127.0.0.1:1']);
  assert.equal([noInbound.code, noInbound.output.trim().split('\n').length], [2, 1]);
  assert.is((await palisadeRun(['control', 'token', 'create', '--dir', path.join(dir, 'nothing'), '--role', 'admin'])).code, 2);
  const badRole = await palisadeRun(['control', 'init', '--dir', path.join(dir, 'plane')]).then(() =>
    palisadeRun(['control', 'token', 'create', '--dir', path.join(dir, 'plane'), '--role', 'root']));
  assert.equal([badRole.code, badRole.output], [2, 'palisade: --role must be admin or viewer\n']);
});

e2e('control serve gets its SVID; a policy PUT through the API reaches an agent\'s sidecar, which enforces it', async () => {
  const plane = path.join(dir, 'plane');
  const created = await palisadeRun(['control', 'token', 'create', '--dir', plane, '--role', 'admin', '--name', 'ci']);
  assert.is(created.code, 0);
  const admin = /^(pct_\S+)$/m.exec(created.output)![1]!;
  const server = palisade(['control', 'serve', '--dir', plane, '--listen', '127.0.0.1:0', '--ca-url', ca.url, '--bundle', bundle(), '--token', (await ca.ca.createToken(CONTROL_ID, 60_000)).token]);
  procs.push(server);
  const url = (await server.waitFor(/listening on (https:\/\/\S+)/))[1]!;
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

e2e.run();
