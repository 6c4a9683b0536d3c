/** `palisade agent … --inbound`: the sidecar in a real agent process joined to a real CA. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, stat, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPrivateKey } from 'node:crypto';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { CertificateAuthority } from '../../ca/ca.ts';
import { startCaServer, type CaServer } from '../../ca/server.ts';
import type { Svid } from '../../agent/sidecar/svid.ts';
import { compiled } from '../agent/sidecar/policies.ts';
import { startEcho, mtlsAgent, call, FRONTEND, TD, type Echo } from '../agent/sidecar/harness.ts';
import { eventually } from '../support/identity.ts';

const cli = suite('palisade agent with the sidecar');
const CARD_ID = `spiffe://${TD}/ns/payments/sa/card`;
const BIN = new URL('../../bin/palisade.js', import.meta.url).pathname;
let dir: string;
let ca: CaServer;
let echo: Echo;
let agent: ChildProcess;
let caClosed = false;
const lines: Record<string, any>[] = [];

/** Resolves with the first stdout JSON line matching `msg`. */
function waitFor(msg: string, timeoutMs = 30_000): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${msg}" line; got ${JSON.stringify(lines.map((l) => l.msg))}`)), timeoutMs);
    const check = () => {
      const hit = lines.find((l) => l.msg === msg);
      if (!hit) return setTimeout(check, 20);
      clearTimeout(timer);
      resolve(hit);
    };
    check();
  });
}

cli.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'palisade-sidecar-cli-'));
  await CertificateAuthority.init(join(dir, 'ca'), TD);
  ca = await startCaServer({ dir: join(dir, 'ca'), port: 0 });
  echo = await startEcho();
  await writeFile(join(dir, 'card.wasm'), await compiled('card'));
  const { token } = await ca.ca.createToken(CARD_ID, 60_000);
  agent = spawn(process.execPath, [
    BIN, 'agent', '--ca-url', ca.url, '--bundle', join(dir, 'ca', 'bundle.pem'), '--token', token,
    '--admin', '127.0.0.1:0', '--inbound', '127.0.0.1:0', '--app', echo.url, '--filter', join(dir, 'card.wasm'),
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  createInterface({ input: agent.stdout! }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line));
    } catch {
      // not a log line
    }
  });
});

cli.after(async () => {
  if (agent.exitCode === null) {
    agent.kill('SIGTERM');
    await new Promise((r) => agent.once('exit', r));
  }
  if (!caClosed) await ca.close();
  await echo.close();
  await rm(dir, { recursive: true, force: true });
});

cli('the admin API: a local process without the token, a rebound DNS name or a web page cannot replace the filter', async () => {
  const { url: admin, token_file: tokenFile } = await waitFor('admin endpoint listening');
  assert.is((await stat(tokenFile)).mode & 0o777, 0o600);
  const token = (await readFile(tokenFile, 'utf8')).trim();
  const before = (await (await request(`${admin}/v1/filter`)).body.json()) as { sha256: string };
  const put = async (headers: Record<string, string>, route = '/v1/filter') => {
    const res = await request(`${admin}${route}`, { method: 'PUT', headers: { 'content-type': 'application/wasm', ...headers }, body: await compiled('ops-only') });
    return [res.statusCode, ((await res.body.json()) as { error: { code: string } }).error.code];
  };
  assert.equal(await put({}), [401, 'unauthorized']);
  assert.equal(await put({ authorization: 'Bearer guessed' }), [401, 'unauthorized']);
  assert.equal(await put({ authorization: token }), [401, 'unauthorized']);
  // A route nobody declared yet is guarded too: state changes need the token by default.
  assert.equal(await put({}, '/v1/anything-later'), [401, 'unauthorized']);
  // DNS rebinding: a page whose name now points at 127.0.0.1 sends its own name as Host.
  const port = new URL(admin).port;
  assert.equal(await put({ authorization: `Bearer ${token}`, host: `evil.example:${port}` }), [403, 'bad_host']);
  const rebound = await request(`${admin}/v1/svid`, { headers: { host: `evil.example:${port}` } });
  assert.equal([rebound.statusCode, ((await rebound.body.json()) as any).error.code], [403, 'bad_host']);
  // A web page (cross-site fetch or form) carries an Origin.
  assert.equal(await put({ authorization: `Bearer ${token}`, origin: 'http://evil.example' }), [403, 'bad_origin']);
  const after = (await (await request(`${admin}/v1/filter`)).body.json()) as { sha256: string };
  assert.is(after.sha256, before.sha256);
});

cli('the agent serves the inbound sidecar with its SVID; /v1/filter hot-reloads it', async () => {
  const { inbound } = await waitFor('sidecar listening');
  const { url: admin, token_file: tokenFile } = await waitFor('admin endpoint listening');
  const minted = await ca.ca.mint(FRONTEND, 600_000);
  const caller: Svid = { spiffeId: FRONTEND, chainPem: minted.svid_pem, privateKey: createPrivateKey(minted.key_pem), notAfter: new Date(minted.not_after) };
  const dispatcher = mtlsAgent(minted.bundle_pem, caller);
  try {
    const ok = await call(inbound, dispatcher, caller, { path: '/cards/1', fingerprint: { target: CARD_ID } });
    assert.is(ok.status, 200);
    const refused = await call(inbound, dispatcher, caller, { path: '/cards/1', fingerprint: false });
    assert.is(refused.status, 401);
    const decision = await waitFor('decision');
    assert.is(decision.caller, FRONTEND);
    assert.is(decision.target, CARD_ID);
    assert.is(decision.rule, 'read-card');

    const authorization = `Bearer ${(await readFile(tokenFile, 'utf8')).trim()}`;
    const put = await request(`${admin}/v1/filter`, { method: 'PUT', headers: { 'content-type': 'application/wasm', authorization }, body: await compiled('ops-only') });
    assert.is(put.statusCode, 200);
    await put.body.text();
    const denied = await call(inbound, dispatcher, caller, { path: '/cards/1', fingerprint: { target: CARD_ID } });
    assert.is(denied.status, 403);

    // A revoked caller is refused by the agent's sidecar once its live-key view refreshes (5 s, as Envoy).
    const revokedSvid = await ca.ca.mint(FRONTEND, 600_000);
    const revoked: Svid = { ...caller, chainPem: revokedSvid.svid_pem, privateKey: createPrivateKey(revokedSvid.key_pem) };
    const revokedDispatcher = mtlsAgent(revokedSvid.bundle_pem, revoked);
    try {
      await ca.ca.revoke(revokedSvid.serial);
      await eventually(async () => (await call(inbound, revokedDispatcher, revoked, { path: '/cards/1', fingerprint: { target: CARD_ID } })).status === 401, 20_000);
    } finally {
      await revokedDispatcher.close();
    }

    // The CA going away does not stop traffic at once: the SVID in memory stays valid until
    // it expires, the live-key view until --revocation-staleness.
    await ca.close();
    caClosed = true;
    const stillServed = await call(inbound, dispatcher, caller, { path: '/cards/1', fingerprint: { target: CARD_ID } });
    assert.is(stillServed.status, 403);
  } finally {
    await dispatcher.close();
  }
});

cli('a staleness bound shorter than two refresh periods is refused in one line, exit 2', async () => {
  const server = await startCaServer({ dir: join(dir, 'ca'), port: 0 });
  try {
    const { token } = await server.ca.createToken(CARD_ID, 60_000);
    const child = spawn(process.execPath, [
      BIN, 'agent', '--ca-url', server.url, '--bundle', join(dir, 'ca', 'bundle.pem'), '--token', token,
      '--inbound', '127.0.0.1:0', '--app', echo.url, '--filter', join(dir, 'card.wasm'), '--revocation-staleness', '5s',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    const code = await new Promise((r) => child.once('exit', r));
    assert.is(code, 2, stderr);
    assert.match(stderr, /--revocation-staleness must be at least 10s/);
    assert.is(stderr.trim().split('\n').length, 1, stderr);
  } finally {
    await server.close();
  }
});

cli.run();
