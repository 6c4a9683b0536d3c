/**
 * SVID issuance throughput: how many join requests (token check, CSR signature
 * verification, certificate signing, single-use token consumption and SVID record in one
 * SQLite transaction) the CA completes per second, in-process and over HTTPS against a
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
import { CertificateAuthority } from '../agent/ca/ca.ts';
import { createCsr, generateKeyPair } from '../agent/identity/pki.ts';

const SPIFFE_ID = 'spiffe://bench.example/ns/bench/sa/workload';

export interface SvidBenchResult {
  ecdsaSignPerSec: number;
  issueInProcessPerSec: number;
  issueHttpsPerSec: number;
  cores: number;
}

/** Runs `work` back to back for `ms` and returns completions per second. */
function rate(ms: number, work: () => void): number {
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < ms) {
    work();
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

async function csrPool(size: number): Promise<string[]> {
  return Promise.all(Array.from({ length: size }, async () => createCsr((await generateKeyPair()).keys)));
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
    const ecdsaSignPerSec = rate(ms / 2, () => sign('sha256', message, privateKey));

    // In-process: the CA's join path, one thread.
    const ca = CertificateAuthority.open(dir);
    const tokens = Array.from({ length: Math.ceil(ecdsaSignPerSec * seconds) }, () => ca.createToken(SPIFFE_ID, 600_000).token);
    let i = 0;
    const issueInProcessPerSec = rate(ms, () => {
      ca.join(tokens[i]!, csrs[i % csrs.length]!);
      i++;
    });

    // Over HTTPS: a real CA process, keep-alive clients with many requests in flight.
    const httpTokens = Array.from({ length: 40_000 }, () => ca.createToken(SPIFFE_ID, 600_000).token);
    ca.close();
    const issueHttpsPerSec = await httpsRate(dir, httpTokens, csrs, ms);
    return { ecdsaSignPerSec, issueInProcessPerSec, issueHttpsPerSec, cores: os.availableParallelism() };
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

async function httpsRate(dir: string, tokens: string[], csrs: string[], ms: number): Promise<number> {
  const bin = path.resolve(import.meta.dirname, '../bin/palisade.js');
  const workers = String(Math.min(2, os.availableParallelism()));
  const server = spawn(process.execPath, [bin, 'ca', 'serve', '--dir', dir, '--listen', '127.0.0.1:0', '--workers', workers], { stdio: ['ignore', 'pipe', 'inherit'] });
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
    await dispatcher.close();
    return done / elapsed;
  } finally {
    server.kill('SIGTERM');
  }
}

function report(result: SvidBenchResult): string {
  const f = (n: number) => Math.round(n).toLocaleString('en-US');
  return [
    `svid: raw ECDSA P-256 sign baseline      ${f(result.ecdsaSignPerSec)}/s (1 thread)`,
    `svid: issuance in-process (join path)    ${f(result.issueInProcessPerSec)}/s = ${(result.issueInProcessPerSec / result.ecdsaSignPerSec * 100).toFixed(1)}% of baseline`,
    `svid: issuance over HTTPS (ca serve --workers ${Math.min(2, result.cores)}) ${f(result.issueHttpsPerSec)}/s = ${(result.issueHttpsPerSec / result.ecdsaSignPerSec * 100).toFixed(1)}% of baseline (${result.cores} cores shared with the load generator)`,
    `svid: target ≥ 1,000 SVIDs/s on 2 cores: ${result.issueHttpsPerSec >= 1000 ? 'met' : 'NOT met'} over HTTPS`,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const secondsFlag = process.argv.indexOf('--seconds');
  const result = await runSvidBench(secondsFlag > 0 ? Number(process.argv[secondsFlag + 1]) : 3);
  console.log(report(result));
  console.log(JSON.stringify(result));
}

export { report as reportSvidBench };
