/**
 * SVID issuance throughput: how many join requests (token check, CSR signature
 * verification, certificate signing, single-use token consumption and SVID record in one
 * SQLite store transaction) the CA completes per second, in-process and over HTTPS against a
 * real `palisade ca serve` process. The baseline is this machine's raw ECDSA P-256 signing
 * rate, measured in the same run, so the figures compare across machines.
 *
 *   node --import tsx bench/svid.ts [--seconds 3]
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Agent, request } from 'undici';
import { CertificateAuthority } from '../ca/ca.ts';
import { createCsr, generateKeyPair } from '../spiffe/pki.ts';

const SPIFFE_ID = 'spiffe://bench.example/ns/bench/sa/workload';

/**
 * Rates per second of wall clock and per second of CPU time. The CPU figure is what a core
 * delivers when it is not shared, so it stays meaningful on a busy machine (CI, laptops).
 */
export interface Rate {
  wall: number;
  cpu: number;
}

export interface SvidBenchResult {
  ecdsaSign: Rate;
  issueInProcess: Rate;
  issueHttps: Rate;
  workers: number;
  cores: number;
}

const cpuSeconds = (usage: NodeJS.CpuUsage) => (usage.user + usage.system) / 1e6;

/** Runs `work` back to back (one at a time) for `ms` on this thread. */
async function rate(ms: number, work: () => unknown): Promise<Rate> {
  const start = performance.now();
  const cpu = process.cpuUsage();
  let n = 0;
  while (performance.now() - start < ms) {
    await work();
    n++;
  }
  return { wall: n / ((performance.now() - start) / 1000), cpu: n / cpuSeconds(process.cpuUsage(cpu)) };
}

/** CPU seconds used so far by a process and its children (the CA workers); Linux /proc. */
function processTreeCpu(pid: number): number {
  const ticks = (p: number) => {
    const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  };
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return [pid, ...children].reduce((sum, p) => sum + ticks(p), 0) / 100; // USER_HZ is 100 on Linux
}

async function csrPool(size: number): Promise<string[]> {
  return Promise.all(Array.from({ length: size }, async () => createCsr((await generateKeyPair()).privateKey)));
}

export async function runSvidBench(seconds = 3): Promise<SvidBenchResult> {
  const ms = seconds * 1000;
  const home = mkdtempSync(path.join(os.tmpdir(), 'palisade-bench-svid-'));
  const dir = path.join(home, 'ca');
  try {
    await CertificateAuthority.init(dir, 'bench.example');
    const csrs = await csrPool(64);

    // Baseline: raw ECDSA P-256 signatures over a certificate-sized message.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const message = Buffer.alloc(450, 7);
    const ecdsaSign = await rate(ms / 2, () => sign('sha256', message, privateKey));

    // In-process: the CA's join path, one thread.
    const ca = await CertificateAuthority.open(dir);
    const newTokens = (n: number) => Promise.all(Array.from({ length: n }, async () => (await ca.createToken(SPIFFE_ID, 600_000)).token));
    const tokens = await newTokens(Math.ceil(ecdsaSign.wall * seconds));
    let i = 0;
    const issueInProcess = await rate(ms, async () => {
      await ca.join(tokens[i]!, csrs[i % csrs.length]!);
      i++;
    });

    // Over HTTPS: a real CA process, keep-alive clients with many requests in flight.
    const httpTokens = await newTokens(40_000);
    await ca.close();
    const workers = Math.min(2, os.availableParallelism());
    const issueHttps = await httpsRate(dir, httpTokens, csrs, ms, workers);
    return { ecdsaSign, issueInProcess, issueHttps, workers, cores: os.availableParallelism() };
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

async function httpsRate(dir: string, tokens: string[], csrs: string[], ms: number, workers: number): Promise<Rate> {
  const bin = path.resolve(import.meta.dirname, '../bin/palisade.js');
  const server = spawn(process.execPath, [bin, 'ca', 'serve', '--dir', dir, '--listen', '127.0.0.1:0', '--workers', String(workers)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      server.stdout!.on('data', (chunk: Buffer) => {
        out += chunk;
        const match = /listening on (https:\S+)/.exec(out);
        if (match) resolve(match[1]!);
      });
      server.on('exit', () => reject(new Error(`ca serve exited: ${out}`)));
    });
    const dispatcher = new Agent({ connect: { ca: readFileSync(path.join(dir, 'bundle.pem')) }, connections: 16, pipelining: 1 });
    let next = 0;
    let done = 0;
    const deadline = performance.now() + ms;
    const start = performance.now();
    const cpuStart = processTreeCpu(server.pid!);
    const worker = async () => {
      while (performance.now() < deadline && next < tokens.length) {
        const k = next++;
        const res = await request(`${url}/v1/join`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ token: tokens[k], csr: csrs[k % csrs.length] }),
          dispatcher,
        });
        await res.body.dump();
        if (res.statusCode !== 200) throw new Error(`join answered ${res.statusCode}`);
        done++;
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    const elapsed = (performance.now() - start) / 1000;
    const cpu = processTreeCpu(server.pid!) - cpuStart;
    await dispatcher.close();
    return { wall: done / elapsed, cpu: done / cpu };
  } finally {
    server.kill('SIGTERM');
  }
}

function report(r: SvidBenchResult): string {
  const f = (n: number) => Math.round(n).toLocaleString('en-US').padStart(7);
  const pct = (n: number) => `${((n / r.ecdsaSign.cpu) * 100).toFixed(1)}% of baseline`;
  const projected = r.issueHttps.cpu * 2;
  return [
    `svid: per CPU-second (per wall-second on this machine now)`,
    `svid:   raw ECDSA P-256 sign baseline   ${f(r.ecdsaSign.cpu)}/s (${f(r.ecdsaSign.wall)}/s)`,
    `svid:   issuance in-process, join path  ${f(r.issueInProcess.cpu)}/s (${f(r.issueInProcess.wall)}/s) = ${pct(r.issueInProcess.cpu)}`,
    `svid:   issuance over HTTPS, CA side    ${f(r.issueHttps.cpu)}/s (${f(r.issueHttps.wall)}/s with ${r.workers} workers and the load generator on ${r.cores} cores) = ${pct(r.issueHttps.cpu)}`,
    `svid: 2 cores of CA ≈ ${f(projected)} SVIDs/s over HTTPS; target ≥ 1,000: ${projected >= 1000 ? 'met' : 'NOT met'}`,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const secondsFlag = process.argv.indexOf('--seconds');
  const result = await runSvidBench(secondsFlag > 0 ? Number(process.argv[secondsFlag + 1]) : 3);
  console.log(report(result));
  console.log(JSON.stringify(result));
}

export { report as reportSvidBench };
