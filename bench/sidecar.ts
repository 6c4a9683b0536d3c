/**
 * The inbound sidecar's cost: throughput (autocannon) and added latency of the full
 * perimeter (mTLS + fingerprint verification + identity of the caller + compiled filter in
 * the strict host) against a plain Node TLS reverse proxy to the same application, measured
 * in the same run. Throughput runs alternate between the two proxies (ROUNDS each), so a
 * machine shared with other work colours both alike; on Linux each run also reports the
 * CPU the proxy process spent per request (event-loop thread, other threads: libuv's pool,
 * V8's helpers), the load generator's thread excluded, which stays comparable when
 * throughput swings with the machine's load. Then the replay cache's memory with 100k
 * distinct fingerprints.
 * Run alone: node --import tsx bench/sidecar.ts   (BENCH_SECONDS, BENCH_ROUNDS)
 */
import 'reflect-metadata';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { randomBytes, webcrypto, createPrivateKey } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { runInNewContext } from 'node:vm';
import { Writable } from 'node:stream';
import * as x509 from '@peculiar/x509';
import { Agent, Pool, request } from 'undici';
import autocannon from 'autocannon';
import { compilePolicy } from '../compiler/index.ts';
import { loadFilter } from '../host/filter.ts';
import { FilterSlot } from '../agent/sidecar/filter-slot.ts';
import { startInbound } from '../agent/sidecar/inbound.ts';
import { SvidHolder, type Svid } from '../agent/sidecar/svid.ts';
import { createLogger } from '../agent/sidecar/decision-log.ts';
import { FINGERPRINT_HEADER, signFingerprint } from '../spiffe/fingerprint.ts';
import { ReplayCache } from '../spiffe/replay-cache.ts';
import { tlsMaterial } from '../agent/sidecar/tls.ts';
import { relay } from '../agent/sidecar/http.ts';
import { AuditLog } from '../audit/log.ts';
import { DecisionAudit } from '../agent/sidecar/audit.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';

const CALLER = 'spiffe://bank.example/ns/web/sa/frontend';
const SERVICE = 'spiffe://bank.example/ns/payments/sa/card';
const PATH = '/cards/42';
const DURATION_S = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONNECTIONS = 16;
const LATENCY_SAMPLES = 2000;
/** Fingerprints per throughput run; more requests than this would replay (and fail) visibly. */
const PRESIGNED = 40_000;

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A root and two SVIDs, as the CA would issue them. */
async function pki(): Promise<{ caPem: string; caller: Svid; service: Svid }> {
  const root = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=bench', keys: root, signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const issue = async (id: string): Promise<Svid> => {
    const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.create({
      subject: 'O=SPIRE', issuer: ca.subject, publicKey: keys.publicKey, signingKey: root.privateKey, signingAlgorithm: alg,
      notAfter: new Date(Date.now() + 3_600_000),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }]),
      ],
    });
    const pkcs8 = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
    return { spiffeId: id, chainPem: cert.toString('pem'), privateKey: createPrivateKey(pkcs8), notAfter: cert.notAfter };
  };
  return { caPem: ca.toString('pem'), caller: await issue(CALLER), service: await issue(SERVICE) };
}

const policy = JSON.stringify({
  palisade: 1, name: 'bench', service: SERVICE,
  rules: [{ id: 'read-card', effect: 'allow', from: [CALLER], to: [{ methods: ['GET'], paths: ['/cards/{id}'] }] }],
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main(): Promise<void> {
  const { caPem, caller, service } = await pki();
  const compiled = await compilePolicy('bench.policy.json', policy);
  if (!compiled.ok) throw new Error('bench policy does not compile');

  const app = createHttpServer((_req, res) => res.end('{"id":"42"}'));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;

  const identity = new SvidHolder(service, caPem);
  const logger = createLogger(new Writable({ write: (_chunk, _enc, done) => done() })); // decisions are not the subject here
  const inbound = async (audit?: DecisionAudit) => startInbound({
    app: appUrl,
    identity,
    filters: await FilterSlot.create(compiled.wasm, (wasm) => loadFilter(wasm)),
    logger,
    replay: new ReplayCache(1_000_000),
    audit,
  });
  const sidecar = await inbound();
  // The same sidecar writing every decision to an audit log (defaults: fsync before each checkpoint).
  const auditDir = mkdtempSync(join(tmpdir(), 'palisade-bench-sidecar-audit-'));
  const auditLog = AuditLog.open({ dir: auditDir, signer: identity });
  const audited = await inbound(new DecisionAudit(auditLog, 'closed', logger, new Registry()));

  // The baseline: TLS 1.3 termination and a keep-alive pool to the same app, nothing else;
  // the body is relayed with the sidecar's own plumbing, so only the perimeter differs.
  const pool = new Pool(appUrl, { connections: 64 });
  const plain = createHttpsServer({ ...tlsMaterial(identity) }, (req, res) => {
    void (async () => {
      const up = await pool.request({ method: 'GET', path: req.url ?? '/', headers: { host: req.headers.host ?? '' } });
      res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? 'text/plain') });
      relay(up.body, res);
    })().catch(() => res.destroy()); // clients hang up at the end of a run
  });
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  const plainUrl = `https://127.0.0.1:${(plain.address() as AddressInfo).port}`;

  const clientTls = { ca: caPem, cert: caller.chainPem, key: caller.privateKey.export({ format: 'pem', type: 'pkcs8' }), checkServerIdentity: () => undefined };
  const fingerprint = () => signFingerprint(caller.privateKey, { caller: CALLER, target: SERVICE, method: 'GET', path: PATH });

  // Latency, unloaded: one keep-alive connection to each proxy and the same signed request
  // to both in turn, so a noisy moment on the machine lands on both alike.
  async function latencies(): Promise<[plain: number[], sidecar: number[]]> {
    const targets = [plainUrl, sidecar.url].map((base) => ({ base, dispatcher: new Agent({ connect: clientTls, connections: 1 }), times: [] as number[] }));
    for (let i = 0; i < LATENCY_SAMPLES + 200; i++) {
      for (const { base, dispatcher, times } of targets) {
        const headers = { [FINGERPRINT_HEADER]: fingerprint() };
        const t = performance.now();
        const res = await request(base + PATH, { headers, dispatcher });
        await res.body.text();
        if (res.statusCode !== 200) throw new Error(`${base}: status ${res.statusCode}`);
        if (i >= 200) times.push(performance.now() - t); // the first 200 warm up the JIT
      }
    }
    await Promise.all(targets.map((target) => target.dispatcher.close()));
    const [plainTimes, sidecarTimes] = targets.map((target) => target.times.sort((a, b) => a - b));
    return [plainTimes, sidecarTimes];
  }

  // Throughput under load.
  async function throughput(base: string): Promise<Load> {
    // The load generator runs in a worker thread so it does not share the proxies' event loop.
    // A .ts worker entry needs tsx registered inside the worker first.
    const entry = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;
    const worker = new Worker(entry, {
      eval: true,
      workerData: { base, caPem, chainPem: caller.chainPem, keyPem: clientTls.key },
    });
    const [loadThread] = (await once(worker, 'message')) as [number | null]; // tokens signed, load starts
    const before = threadTicks();
    const [result] = (await once(worker, 'message')) as [Load];
    const after = threadTicks();
    await worker.terminate();
    if (before && after && loadThread !== null) result.cpu = cpuPerRequest(before, after, loadThread, result.completed);
    return result;
  }

  const [plainLat, sidecarLat] = await latencies();
  const loads: { plain: Load; sidecar: Load; audited: Load }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    // Every other round runs the proxies in reverse order: this process gets slower as it runs
    // (every proxy's replay cache and the audit tree grow), which in a fixed order would always
    // count against the proxy measured last, the audited sidecar.
    const round = {} as { plain: Load; sidecar: Load; audited: Load };
    const order = [['plain', plainUrl], ['sidecar', sidecar.url], ['audited', audited.url]] as const;
    for (const [name, url] of i % 2 ? [...order].reverse() : order) round[name] = await throughput(url);
    loads.push(round);
  }

  const ms = (x: number) => x.toFixed(3);
  console.log('### Inbound sidecar vs plain Node TLS reverse proxy (same machine, same run)');
  console.log(`unloaded latency over ${LATENCY_SAMPLES} sequential requests to each, alternating, one keep-alive connection each (ms):`);
  console.log('| | p50 | p99 |');
  console.log('| --- | ---: | ---: |');
  console.log(`| plain TLS proxy | ${ms(percentile(plainLat, 50))} | ${ms(percentile(plainLat, 99))} |`);
  console.log(`| sidecar (mTLS + fingerprint + filter) | ${ms(percentile(sidecarLat, 50))} | ${ms(percentile(sidecarLat, 99))} |`);
  console.log(`| added | ${ms(percentile(sidecarLat, 50) - percentile(plainLat, 50))} | ${ms(percentile(sidecarLat, 99) - percentile(plainLat, 99))} (target ≤ 1 ms) |`);
  console.log(`\nthroughput, autocannon ${CONNECTIONS} connections × ${DURATION_S} s, ${ROUNDS} alternating rounds:`);
  console.log(`| round | proxy | req/s | requests | errors + non-2xx | CPU µs/request: event loop + other threads |`);
  console.log('| ---: | --- | ---: | ---: | ---: | ---: |');
  const cpu = (r: Load) => (r.cpu ? `${r.cpu.loop.toFixed(0)} + ${r.cpu.other.toFixed(0)}` : 'n/a');
  loads.forEach((round, i) => {
    for (const [name, r] of [['plain TLS proxy', round.plain], ['sidecar', round.sidecar], ['sidecar + audit log', round.audited]] as const) {
      console.log(`| ${i + 1} | ${name} | ${r.rps.toFixed(0)} | ${r.completed} | ${r.failed} | ${cpu(r)} |`);
    }
  });
  const rate = (which: 'plain' | 'sidecar' | 'audited') => loads.reduce((sum, l) => sum + l[which].rps, 0);
  const ratios = loads.map((l) => `${((100 * l.sidecar.rps) / l.plain.rps).toFixed(0)}%`).join(', ');
  console.log(`\nsidecar throughput / plain proxy: ${((100 * rate('sidecar')) / rate('plain')).toFixed(0)}% over all rounds (${ratios} per round; target ≥ 80%)`);

  const auditRatios = loads.map((l) => `${((100 * l.audited.rps) / l.sidecar.rps).toFixed(0)}%`).join(', ');
  console.log(`sidecar throughput with the audit log / without: ${((100 * rate('audited')) / rate('sidecar')).toFixed(0)}% over all rounds (${auditRatios} per round; target ≥ 95%)`);

  await sidecar.close();
  await audited.close();
  await auditLog.close();
  rmSync(auditDir, { recursive: true, force: true });
  await new Promise((r) => plain.close(r));
  await pool.close();
  app.close();

  console.log(`\n### Replay cache memory`);
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const jtis = Array.from({ length: 100_000 }, () => randomBytes(16).toString('base64url'));
  gc();
  const before = process.memoryUsage().heapUsed;
  const cache = new ReplayCache(100_000);
  const now = Date.now() / 1000;
  for (let i = 0; i < jtis.length; i++) cache.admit(jtis[i], now + 35 + (i % 30), now);
  gc();
  const used = process.memoryUsage().heapUsed - before;
  console.log(`100,000 distinct fingerprints: ${(used / 1_048_576).toFixed(1)} MiB heap (${(used / 100_000).toFixed(0)} bytes per entry, jti strings included);`);
  console.log(`the 100,001st is refused (${cache.admit(randomBytes(16).toString('base64url'), now + 30, now)}) until entries expire: the bound holds.`);
}

interface Load {
  rps: number;
  completed: number;
  failed: number;
  /** CPU per request of the process minus the load generator (µs): the event-loop thread, everything else. */
  cpu?: { loop: number; other: number };
}

/** CPU clock ticks per thread of this process (Linux), or null elsewhere. */
function threadTicks(): Map<number, number> | null {
  if (!existsSync('/proc/self/task')) return null;
  const ticks = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks.set(Number(tid), Number(fields[11]) + Number(fields[12])); // utime + stime
    } catch {
      // the thread ended meanwhile
    }
  }
  return ticks;
}

function cpuPerRequest(before: Map<number, number>, after: Map<number, number>, loadThread: number, requests: number): Load['cpu'] {
  const usPerTick = 1e6 / 100; // USER_HZ
  let loop = 0;
  let other = 0;
  for (const [tid, ticks] of after) {
    const used = (ticks - (before.get(tid) ?? 0)) * usPerTick;
    if (tid === process.pid) loop += used;
    else if (tid !== loadThread) other += used;
  }
  return { loop: loop / requests, other: other / requests };
}

/** The load generator, in its worker thread. */
async function load(data: { base: string; caPem: string; chainPem: string; keyPem: string }): Promise<void> {
  const key = createPrivateKey(data.keyPem);
  // Signed before the run (each valid 30 s, used once): the caller's signing cost is not the
  // sidecar's. Both proxies get the same requests; the plain one ignores the header.
  const tokens = Array.from({ length: PRESIGNED }, () => signFingerprint(key, { caller: CALLER, target: SERVICE, method: 'GET', path: PATH }));
  let next = 0;
  parentPort!.postMessage(existsSync('/proc/thread-self') ? Number(readlinkSync('/proc/thread-self').split('/').pop()) : null);
  const result = await autocannon({
    url: data.base + PATH,
    connections: CONNECTIONS,
    duration: DURATION_S,
    tlsOptions: { ca: data.caPem, cert: data.chainPem, key: data.keyPem, checkServerIdentity: () => undefined },
    requests: [{
      method: 'GET',
      path: PATH,
      setupRequest: (req) =>
        ({ ...req, headers: { ...req.headers, [FINGERPRINT_HEADER]: tokens[next++ % tokens.length] } }),
    }],
  });
  // In a worker autocannon hands back its histograms encoded: report the counts.
  const summary: Load = { rps: result.totalCompletedRequests / result.duration, completed: result.totalCompletedRequests, failed: result.errors + result.non2xx + result.timeouts };
  parentPort!.postMessage(summary);
}

if (isMainThread) await main();
else await load(workerData);
