/**
 * `palisade agent --audit-dir` in a real agent process joined to a real CA: the admin API
 * serves checkpoints and proofs a third party can check, `palisade audit verify|query|prove`
 * read the log, and `kill -9` under load loses no entry of a forwarded request.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { copyFileSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { request } from 'undici';
import { CertificateAuthority } from '../../ca/ca.ts';
import { startCaServer, type CaServer } from '../../ca/server.ts';
import type { Svid } from '../../agent/sidecar/svid.ts';
import { verifyInclusion, verifyConsistency, leafHash } from '../../audit/merkle.ts';
import { parseCheckpoint, checkSignature } from '../../audit/checkpoint.ts';
import { spiffeIdOfCert } from '../../audit/chain.ts';
import { compiled } from '../agent/sidecar/policies.ts';
import { startEcho, mtlsAgent, call, FRONTEND, TD, type Echo } from '../agent/sidecar/harness.ts';

const e2e = suite('palisade agent --audit-dir');
const CARD_ID = `spiffe://${TD}/ns/payments/sa/card`;
const BIN = new URL('../../bin/palisade.js', import.meta.url).pathname;
let dir: string;
let ca: CaServer;
let echo: Echo;
let caller: Svid;
let bundlePem: string;
const running: ChildProcess[] = [];

/** Starts an agent with the sidecar and the audit log; resolves with its inbound and admin URLs. */
async function startAgent(): Promise<{ process: ChildProcess; inbound: string; admin: string }> {
  const { token } = await ca.ca.createToken(CARD_ID, 60_000);
  const child = spawn(process.execPath, [
    BIN, 'agent', '--ca-url', ca.url, '--bundle', join(dir, 'ca', 'bundle.pem'), '--token', token,
    '--admin', '127.0.0.1:0', '--inbound', '127.0.0.1:0', '--app', echo.url, '--filter', join(dir, 'card.wasm'),
    '--audit-dir', join(dir, 'audit'), '--admin-token-file', join(dir, 'admin-token'),
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  running.push(child);
  const urls: Record<string, string> = {};
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('agent did not start')), 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let msg: Record<string, string>;
      try {
        msg = JSON.parse(line);
      } catch {
        return;
      }
      if (msg.msg === 'sidecar listening') urls.inbound = msg.inbound!;
      if (msg.msg === 'admin endpoint listening') urls.admin = msg.url!;
      if (msg.msg === 'agent ready') {
        clearTimeout(timer);
        resolve({ process: child, inbound: urls.inbound!, admin: urls.admin! });
      }
    });
    child.once('exit', (code) => reject(new Error(`agent exited with ${code}`)));
  });
}

/** The admin token the agent wrote (mode 0600) at its last start. */
const withToken = () => ({ headers: { authorization: `Bearer ${readFileSync(join(dir, 'admin-token'), 'utf8').trim()}` } });

const stopped = (child: ChildProcess, signal: NodeJS.Signals) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  });

/** Runs palisade without blocking this process (the CA it joins runs here). */
async function palisadeAsync(...args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const [code] = (await once(child, 'exit')) as [number];
  return { code, stderr };
}

function palisade(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

e2e.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'palisade-audit-e2e-'));
  await CertificateAuthority.init(join(dir, 'ca'), TD);
  ca = await startCaServer({ dir: join(dir, 'ca'), port: 0 });
  echo = await startEcho();
  await writeFile(join(dir, 'card.wasm'), await compiled('card'));
  const minted = await ca.ca.mint(FRONTEND, 600_000);
  caller = { spiffeId: FRONTEND, chainPem: minted.svid_pem, privateKey: createPrivateKey(minted.key_pem), notAfter: new Date(minted.not_after) };
  bundlePem = minted.bundle_pem;
});

e2e.after(async () => {
  for (const child of running) await stopped(child, 'SIGKILL');
  await ca.close();
  await echo.close();
  await rm(dir, { recursive: true, force: true });
});

e2e('kill -9 under load loses no forwarded request; the restarted agent repairs the tail; everything verifies', async () => {
  const first = await startAgent();
  const dispatcher = mtlsAgent(bundlePem, caller);
  // 16 callers in a loop until the agent dies under them.
  let answered = 0;
  const worker = async (w: number) => {
    for (let i = 0; ; i++) {
      try {
        await call(first.inbound, dispatcher, caller, { path: `/cards/${w}-${i}`, fingerprint: { target: CARD_ID } });
        answered++;
      } catch {
        return; // the agent is gone
      }
    }
  };
  const load = Array.from({ length: 16 }, (_, w) => worker(w));
  while (answered < 300) await new Promise((r) => setTimeout(r, 5));
  await stopped(first.process, 'SIGKILL');
  await Promise.all(load);
  await dispatcher.close();
  const forwarded = new Set(echo.seen.map((s) => s.headers['x-request-id'] as string));
  assert.ok(forwarded.size >= 300);

  // The restarted agent opens the log (cutting a torn write, if the kill left one) and goes on.
  const second = await startAgent();
  const d2 = mtlsAgent(bundlePem, caller);
  assert.is((await call(second.inbound, d2, caller, { path: '/cards/after', fingerprint: { target: CARD_ID } })).status, 200);
  await d2.close();
  await stopped(second.process, 'SIGTERM');

  const verified = palisade('audit', 'verify', join(dir, 'audit'), '--bundle', join(dir, 'ca', 'bundle.pem'));
  assert.is(verified.code, 0, verified.stderr);
  assert.match(verified.stdout, /^verified \d+ entries, \d+ checkpoints\n$/);
  const logged = new Set(palisade('audit', 'query', join(dir, 'audit'), '--format', 'json').stdout.trim().split('\n').map((l) => JSON.parse(l).request_id));
  const missing = [...forwarded].filter((id) => !logged.has(id));
  assert.equal(missing, [], 'forwarded requests without an audit entry');
});

e2e('the admin API serves a checkpoint and proofs a third party checks; query and prove read the log', async () => {
  const agent = await startAgent();
  const dispatcher = mtlsAgent(bundlePem, caller);
  try {
    assert.is((await call(agent.inbound, dispatcher, caller, { method: 'DELETE', path: '/cards/1', fingerprint: { target: CARD_ID } })).status, 403);
    // The timed checkpoint (every second) covers it soon.
    let cp: { checkpoint: string; chain: string; size: number } | undefined;
    for (let i = 0; i < 50; i++) {
      const res = await request(`${agent.admin}/v1/audit/checkpoint`);
      cp = (await res.body.json()) as typeof cp;
      if (res.statusCode === 200) {
        const last = (await (await request(`${agent.admin}/v1/audit/entries?from=${cp!.size - 1}&to=${cp!.size}`, withToken())).body.json()) as { entries: string[] };
        if (JSON.parse(last.entries[0]!).decision === 'deny') break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const head = parseCheckpoint(cp!.checkpoint);
    const leaf = new X509Certificate(cp!.chain);
    checkSignature(head, leaf, spiffeIdOfCert(leaf)); // signed by the card agent's SVID
    const proof = (await (await request(`${agent.admin}/v1/audit/proof?entry=${head.size - 1}`)).body.json()) as Record<string, any>;
    assert.is(JSON.parse(proof.entry).decision, 'deny');
    assert.ok(verifyInclusion(leafHash(Buffer.from(proof.entry)), proof.index, proof.tree_size, proof.proof.map((p: string) => Buffer.from(p, 'base64')), head.root));
    const consistency = (await (await request(`${agent.admin}/v1/audit/consistency?from=1`)).body.json()) as Record<string, any>;
    assert.is(consistency.to_size, head.size);
    const first = (await (await request(`${agent.admin}/v1/audit/entries?from=0&to=1`, withToken())).body.json()) as { entries: string[] };
    // Entries carry callers, users' claims and paths: not for a local process without the token.
    const anonymous = await request(`${agent.admin}/v1/audit/entries?from=0&to=1`);
    assert.is(anonymous.statusCode, 401);
    assert.is(((await anonymous.body.json()) as any).error.code, 'unauthorized');
    assert.is(consistency.from_root, leafHash(first.entries[0]!).toString('base64')); // the tree of one entry
    const b64 = (x: string) => Buffer.from(x, 'base64');
    assert.ok(verifyConsistency(1, head.size, consistency.proof.map(b64), b64(consistency.from_root), head.root));
    const bad = await request(`${agent.admin}/v1/audit/proof?entry=abc`);
    assert.is(bad.statusCode, 400);
    assert.is(((await bad.body.json()) as any).error.code, 'bad_entry');
  } finally {
    await dispatcher.close();
    await stopped(agent.process, 'SIGTERM');
  }
  const audit = join(dir, 'audit');
  const table = palisade('audit', 'query', audit, '--decision', 'deny', '--caller', FRONTEND);
  assert.is(table.code, 0, table.stderr);
  assert.match(table.stdout, /^SEQ +TIME +CALLER/);
  assert.match(table.stdout, /DELETE +\/cards\/1 +deny +403/);
  assert.is(table.stdout.trim().split('\n').length, 2);
  const proved = palisade('audit', 'prove', audit, '--entry', '0');
  assert.is(proved.code, 0, proved.stderr);
  const proof = JSON.parse(proved.stdout);
  assert.ok(verifyInclusion(Buffer.from(proof.leaf_hash, 'base64'), 0, proof.tree_size, proof.proof.map((p: string) => Buffer.from(p, 'base64')), parseCheckpoint(proof.checkpoint).root));

  // A collector keeps the latest checkpoint (and its chain beside it, as FILE.pem).
  const latest = readdirSync(join(audit, 'checkpoints')).filter((f) => f.endsWith('.note')).sort().at(-1)!;
  copyFileSync(join(audit, 'checkpoints', latest), join(dir, 'kept.note'));
  copyFileSync(join(audit, 'checkpoints', latest.replace('.note', '.pem')), join(dir, 'kept.pem'));
  const pinned = palisade('audit', 'verify', audit, '--bundle', join(dir, 'ca', 'bundle.pem'), '--checkpoint', join(dir, 'kept.note'));
  assert.is(pinned.code, 0, pinned.stderr);

  // One changed byte and the CLI says where, exit 1.
  const segment = join(audit, 'segments', readdirSync(join(audit, 'segments'))[0]!);
  const text = readFileSync(segment, 'utf8');
  writeFileSync(segment, text.replace('"decision":"allow"', '"decision":"allox"'));
  const failed = palisade('audit', 'verify', audit, '--bundle', join(dir, 'ca', 'bundle.pem'));
  assert.is(failed.code, 1);
  assert.match(failed.stderr, /^palisade: audit log .* FAILED: entry 0: altered \(entry 1, segments\/0+\.jsonl:2, recorded another hash for it\)\n$/);
  const usage = palisade('audit', 'query', audit, '--since', 'yesterday');
  assert.is(usage.code, 2);
  assert.is(usage.stderr, 'palisade: --since must be an ISO 8601 time, not "yesterday"\n');
});

e2e('bad audit flags are one line and exit 2', async () => {
  const { token } = await ca.ca.createToken(CARD_ID, 60_000);
  const base = ['agent', '--ca-url', ca.url, '--bundle', join(dir, 'ca', 'bundle.pem'), '--token', token];
  const alone = await palisadeAsync(...base, '--audit-dir', join(dir, 'x'));
  assert.is(alone.code, 2, alone.stderr);
  assert.is(alone.stderr.split('\n').filter((l) => l.startsWith('palisade:')).join('\n'), "palisade: --audit-dir records the inbound sidecar's decisions: it needs --inbound");
  const { token: token2 } = await ca.ca.createToken(CARD_ID, 60_000);
  const mode = await palisadeAsync('agent', '--ca-url', ca.url, '--bundle', join(dir, 'ca', 'bundle.pem'), '--token', token2, '--audit-dir', join(dir, 'x'),
    '--inbound', '127.0.0.1:0', '--app', echo.url, '--filter', join(dir, 'card.wasm'), '--audit-failure', 'maybe');
  assert.is(mode.code, 2);
  assert.match(mode.stderr, /^palisade: --audit-failure must be closed or open$/m);
});

e2e.run();
