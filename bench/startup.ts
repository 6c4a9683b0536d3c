/**
 * Start-up time and idle memory of the shipped CLI (`bin/palisade.js`), as users run it:
 * wall time of `palisade --help`, and the resident set of an idle `palisade ca serve` and
 * of an idle `palisade agent` with its inbound sidecar (joined to that CA, policy filter
 * loaded), after a short settle. Medians of several runs.
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

const ROOT = path.resolve(import.meta.dirname, '..');
const BIN = path.join(ROOT, 'bin/palisade.js');
const POLICY = path.join(ROOT, 'examples/card-service/card-service.policy.json');
const SERVICE_ID = 'spiffe://bench.example/ns/payments/sa/card-service';
/** Long enough for start-up garbage to be collected or at least stop growing. */
const SETTLE_MS = 3_000;

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

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/** One CA and one agent with its sidecar, both idle: their RSS in MB. */
async function idleRss(dir: string, wasm: string, app: string): Promise<{ ca: number; agent: number }> {
  const caDir = path.join(dir, `ca-${Math.random().toString(36).slice(2)}`);
  palisadeSync(['ca', 'init', '--dir', caDir, '--trust-domain', 'bench.example']);
  const token = palisadeSync(['ca', 'token', 'create', '--dir', caDir, '--spiffe-id', SERVICE_ID]).trim();
  const ca = await started(['ca', 'serve', '--dir', caDir, '--listen', '127.0.0.1:0'], /listening on (\S+)/);
  try {
    const agent = await started([
      'agent', '--ca-url', ca.match[1]!, '--bundle', path.join(caDir, 'bundle.pem'), '--token', token,
      '--admin', '127.0.0.1:0', '--inbound', '127.0.0.1:0', '--app', app, '--filter', wasm,
    ], /"msg":"agent ready"/);
    try {
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      return { ca: rssMb(ca.child.pid!), agent: rssMb(agent.child.pid!) };
    } finally {
      await stop(agent.child);
    }
  } finally {
    await stop(ca.child);
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
  const rss: { ca: number; agent: number }[] = [];
  for (let i = 0; i < runs; i++) rss.push(await idleRss(dir, wasm, appUrl));
  console.log('| measure | median | runs |');
  console.log('| --- | ---: | ---: |');
  console.log(`| \`palisade --help\` wall time | ${median(help).toFixed(3)} s | ${runs} |`);
  console.log(`| idle \`palisade ca serve\` RSS | ${median(rss.map((r) => r.ca)).toFixed(1)} MB | ${runs} |`);
  console.log(`| idle \`palisade agent\` with inbound sidecar RSS | ${median(rss.map((r) => r.agent)).toFixed(1)} MB | ${runs} |`);
} finally {
  app.close();
  rmSync(dir, { recursive: true, force: true });
}
