/**
 * Start-up time and idle memory of the shipped CLI (`bin/palisade.js`), as users run it:
 * wall time of `palisade --help`, and the resident set of an idle `palisade ca serve` and
 * of an idle `palisade agent` with its inbound sidecar (joined to that CA, policy filter
 * loaded, admin API on), after a short settle and again once V8's memory reducer has run;
 * then the agent's again after REQUESTS
 * allowed requests through its sidecar (mTLS, a fingerprint each, forwarded to the
 * application) and the same settle; and an idle agent as before without --admin. Medians
 * of several runs; every run's idle agent figure too (V8's background compiles once made
 * it bimodal).
 *
 *   node --import tsx bench/startup.ts [--runs 5]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createPrivateKey } from 'node:crypto';
import { Agent, request } from 'undici';
import { CertificateAuthority } from '../ca/ca.ts';
import { cpuMicros, stopChild } from './child-process.ts';
import { FINGERPRINT_HEADER, signFingerprint } from '../spiffe/fingerprint.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const BIN = path.join(ROOT, 'bin/palisade.js');
const POLICY = path.join(ROOT, 'examples/card-service/card-service.policy.json');
const SERVICE_ID = 'spiffe://bank.example/ns/payments/sa/card-service';
/** A caller the example policy allows (rule ops-health): every request is forwarded. */
const CALLER_ID = 'spiffe://bank.example/ns/ops/sa/monitor';
const REQUESTS = 1_000;
/** Long enough for start-up garbage to be collected or at least stop growing. */
const SETTLE_MS = 3_000;
/**
 * Further idle time after which V8's memory reducer has run (~8 s after the last full
 * collection): it also gives back the young generation's spare half, which nothing else
 * does. The idle agent is measured at both times.
 */
const STEADY_MS = 9_000;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function palisadeSync(args: string[]): string {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`palisade ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function helpSeconds(): number {
  const start = process.hrtime.bigint();
  palisadeSync(['--help']);
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Starts `palisade …` and resolves once a line of its stdout matches `ready`. */
function started(args: string[], ready: RegExp): Promise<{ child: ChildProcess; match: RegExpMatchArray }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk;
      const match = out.match(ready);
      if (match) resolve({ child, match });
    });
    child.once('exit', (code) => reject(new Error(`palisade ${args[0]} exited ${code} before ${ready}:\n${out}`)));
  });
}

function rssMb(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  return kb / 1024;
}

interface Rss {
  ca: number;
  agent: number;
  /** The same agent STEADY_MS later, still idle. */
  agentSteady: number;
  agentWithoutAdmin: number;
  agentAfterRequests: number;
  /** The agent's CPU per request while it served them, in ms. */
  cpuPerRequestMs: number;
}

/** An agent with its inbound sidecar joined to `ca`, with its admin API unless `admin` is false; resolves once it is ready. */
async function startAgent(caDir: string, caUrl: string, wasm: string, app: string, admin = true) {
  const token = palisadeSync(['ca', 'token', 'create', '--dir', caDir, '--spiffe-id', SERVICE_ID]).trim();
  return started([
    'agent', '--ca-url', caUrl, '--bundle', path.join(caDir, 'bundle.pem'), '--token', token,
    ...(admin ? ['--admin', '127.0.0.1:0'] : []), '--inbound', '127.0.0.1:0', '--app', app, '--filter', wasm,
  ], /"inbound":"(https:[^"]+)"[\s\S]*"msg":"agent ready"/);
}

/** One CA and agents with their sidecars: their RSS in MB, idle, and the agent's after REQUESTS requests. */
async function idleRss(dir: string, wasm: string, app: string): Promise<Rss> {
  const caDir = path.join(dir, `ca-${Math.random().toString(36).slice(2)}`);
  palisadeSync(['ca', 'init', '--dir', caDir, '--trust-domain', 'bank.example']);
  const authority = await CertificateAuthority.open(caDir);
  const caller = await authority.mint(CALLER_ID, 3_600_000);
  await authority.close();
  const ca = await started(['ca', 'serve', '--dir', caDir, '--listen', '127.0.0.1:0'], /listening on (\S+)/);
  try {
    const agent = await startAgent(caDir, ca.match[1]!, wasm, app);
    let measured: Omit<Rss, 'agentWithoutAdmin'>;
    try {
      await settle();
      const first = { ca: rssMb(ca.child.pid!), agent: rssMb(agent.child.pid!) };
      await new Promise((r) => setTimeout(r, STEADY_MS));
      const idle = { ...first, agentSteady: rssMb(agent.child.pid!) };
      const cpuBefore = cpuMicros(agent.child.pid!)!; // this bench reads /proc throughout (RSS too)
      await allowedRequests(agent.match[1]!, caller);
      const cpuPerRequestMs = (cpuMicros(agent.child.pid!)! - cpuBefore) / 1000 / REQUESTS;
      await settle();
      measured = { ...idle, agentAfterRequests: rssMb(agent.child.pid!), cpuPerRequestMs };
    } finally {
      await stopChild(agent.child);
    }
    const bare = await startAgent(caDir, ca.match[1]!, wasm, app, false);
    try {
      await settle();
      return { ...measured, agentWithoutAdmin: rssMb(bare.child.pid!) };
    } finally {
      await stopChild(bare.child);
    }
  } finally {
    await stopChild(ca.child);
  }
}

const settle = () => new Promise((r) => setTimeout(r, SETTLE_MS));

/** REQUESTS requests the policy allows, one after another on one mTLS connection, each with its own fingerprint. */
async function allowedRequests(inbound: string, caller: { svid_pem: string; key_pem: string; bundle_pem: string }): Promise<void> {
  const key = createPrivateKey(caller.key_pem);
  const dispatcher = new Agent({ connect: { ca: caller.bundle_pem, cert: caller.svid_pem, key: caller.key_pem, checkServerIdentity: () => undefined } });
  try {
    for (let i = 0; i < REQUESTS; i++) {
      const fingerprint = signFingerprint(key, { caller: CALLER_ID, target: SERVICE_ID, method: 'GET', path: '/healthz' });
      const res = await request(`${inbound}/healthz`, { headers: { [FINGERPRINT_HEADER]: fingerprint }, dispatcher });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`request ${i} through the sidecar: ${res.statusCode}`);
    }
  } finally {
    await dispatcher.close();
  }
}

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const runs = Number(values.runs);
const dir = mkdtempSync(path.join(os.tmpdir(), 'palisade-bench-startup-'));
const app = createServer((_req, res) => res.end('ok')).listen(0, '127.0.0.1');
try {
  await once(app, 'listening');
  palisadeSync(['compile', POLICY, '--out', dir]);
  const wasm = path.join(dir, 'card-service.wasm');
  const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  const help = Array.from({ length: runs }, helpSeconds);
  const rss: Rss[] = [];
  for (let i = 0; i < runs; i++) rss.push(await idleRss(dir, wasm, appUrl));
  console.log('| measure | median | runs |');
  console.log('| --- | ---: | ---: |');
  console.log(`| \`palisade --help\` wall time | ${median(help).toFixed(3)} s | ${runs} |`);
  console.log(`| idle \`palisade ca serve\` RSS | ${median(rss.map((r) => r.ca)).toFixed(1)} MB | ${runs} |`);
  console.log(`| idle \`palisade agent\` with inbound sidecar RSS | ${median(rss.map((r) => r.agent)).toFixed(1)} MB | ${runs} |`);
  console.log(`| the same agent ${(SETTLE_MS + STEADY_MS) / 1000} s after ready, still idle (V8's memory reducer has run) | ${median(rss.map((r) => r.agentSteady)).toFixed(1)} MB | ${runs} |`);
  console.log(`| the same agent without \`--admin\` | ${median(rss.map((r) => r.agentWithoutAdmin)).toFixed(1)} MB | ${runs} |`);
  console.log(`| the same agent after ${REQUESTS.toLocaleString('en')} requests, idle again | ${median(rss.map((r) => r.agentAfterRequests)).toFixed(1)} MB | ${runs} |`);
  console.log(`| its CPU per request while serving them | ${median(rss.map((r) => r.cpuPerRequestMs)).toFixed(2)} ms | ${runs} |`);
  console.log(`\nidle agent with inbound sidecar, every run: ${rss.map((r) => r.agent.toFixed(1)).join(', ')} MB; ${(SETTLE_MS + STEADY_MS) / 1000} s after ready: ${rss.map((r) => r.agentSteady.toFixed(1)).join(', ')} MB`);
} finally {
  app.close();
  rmSync(dir, { recursive: true, force: true });
}
