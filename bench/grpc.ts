/**
 * gRPC through the embedded sidecar against a direct HTTP/2 connection, in the same run: a
 * grpc-js unary service, called by a grpc-js client either straight over h2c or through the
 * outbound sidecar (h2c in, one HTTP/2 mTLS session out, a fingerprint per call) and the
 * inbound sidecar (fingerprint check, the compiled examples/grpc policy in the strict host,
 * h2c to the service). Throughput: CONCURRENCY calls in flight for BENCH_SECONDS, the two
 * paths alternating for BENCH_ROUNDS rounds; latency: one call at a time, LATENCY_SAMPLES
 * each, alternating in blocks. Run alone: node --import tsx bench/grpc.ts
 */
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { compilePolicy } from '../compiler/index.ts';
import { loadFilter } from '../host/filter.ts';
import { FilterSlot } from '../agent/sidecar/filter-slot.ts';
import { startInbound } from '../agent/sidecar/inbound.ts';
import { startOutbound } from '../agent/sidecar/outbound.ts';
import { SvidHolder } from '../agent/sidecar/svid.ts';
import { createLogger } from '../agent/sidecar/decision-log.ts';
import { ReplayCache } from '../spiffe/replay-cache.ts';
import { createCa } from '../test/agent/sidecar/pki.ts';

const TD = 'bank.example';
const CALLER = `spiffe://${TD}/ns/web/sa/frontend`;
const SERVICE = `spiffe://${TD}/ns/payments/sa/card`;
const METHOD = '/demo.Cards/Get';
const DURATION_S = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONCURRENCY = 32;
const LATENCY_SAMPLES = 2000;
const POLICY = fileURLToPath(new URL('../examples/grpc/cards.policy.json', import.meta.url));

const raw = (b: Buffer) => b;
const REQUEST = Buffer.from('42');

function call(client: grpc.Client): Promise<void> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(METHOD, raw, raw, REQUEST, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err) => (err ? reject(err) : resolve())),
  );
}

/** Calls completed per second with `CONCURRENCY` in flight for `seconds`. */
async function throughput(client: grpc.Client, seconds: number): Promise<number> {
  const until = performance.now() + seconds * 1000;
  let done = 0;
  const worker = async () => {
    while (performance.now() < until) {
      await call(client);
      done++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return done / ((performance.now() - started) / 1000);
}

/** Microseconds per call, one at a time. */
async function latencies(client: grpc.Client, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call(client);
    out.push((performance.now() - t) * 1000);
  }
  return out;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function main(): Promise<void> {
  const compiled = await compilePolicy(POLICY, readFileSync(POLICY, 'utf8'));
  if (!compiled.ok) throw new Error('examples/grpc does not compile');
  const ca = await createCa(TD);
  const logger = createLogger(new Writable({ write: (_c, _e, done) => done() })); // decisions are not the subject here

  const app = new grpc.Server();
  app.register(METHOD, (req: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => done(null, req.request), raw, raw, 'unary');
  const appPort = await new Promise<number>((resolve, reject) =>
    app.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
  const filters = await FilterSlot.create(compiled.wasm, (wasm) => loadFilter(wasm));
  const inbound = await startInbound({
    app: `http://127.0.0.1:${appPort}`, appProtocol: 'h2c', identity: new SvidHolder(await ca.issue(SERVICE), ca.certPem), filters, logger, replay: new ReplayCache(1_000_000),
  });
  const outbound = await startOutbound({ routes: { card: { url: inbound.url, spiffeId: SERVICE } }, identity: new SvidHolder(await ca.issue(CALLER), ca.certPem), logger });

  const direct = new grpc.Client(`127.0.0.1:${appPort}`, grpc.credentials.createInsecure());
  const sidecar = new grpc.Client(`127.0.0.1:${outbound.port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'card' });
  for (const c of [direct, sidecar]) await latencies(c, 200); // warm-up: connections, JIT

  const rates = { direct: [] as number[], sidecar: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    rates.direct.push(await throughput(direct, DURATION_S));
    rates.sidecar.push(await throughput(sidecar, DURATION_S));
  }
  const samples = { direct: [] as number[], sidecar: [] as number[] };
  for (let block = 0; block < 10; block++) {
    samples.direct.push(...(await latencies(direct, LATENCY_SAMPLES / 10)));
    samples.sidecar.push(...(await latencies(sidecar, LATENCY_SAMPLES / 10)));
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const d = samples.direct.sort((a, b) => a - b);
  const s = samples.sidecar.sort((a, b) => a - b);
  const fmt = (us: number) => us.toFixed(0);
  console.log(`gRPC unary, ${CONCURRENCY} in flight, ${ROUNDS} × ${DURATION_S} s alternating; latency one call at a time, ${LATENCY_SAMPLES} samples each`);
  console.log('| path | calls/s | p50 µs | p99 µs |');
  console.log('| --- | ---: | ---: | ---: |');
  console.log(`| direct h2c | ${mean(rates.direct).toFixed(0)} | ${fmt(percentile(d, 50))} | ${fmt(percentile(d, 99))} |`);
  console.log(`| outbound + inbound sidecar | ${mean(rates.sidecar).toFixed(0)} | ${fmt(percentile(s, 50))} | ${fmt(percentile(s, 99))} |`);
  console.log(
    `\nthrough the sidecars: ${((100 * mean(rates.sidecar)) / mean(rates.direct)).toFixed(0)} % of direct throughput; ` +
      `added latency p50 ${fmt(percentile(s, 50) - percentile(d, 50))} µs, p99 ${fmt(percentile(s, 99) - percentile(d, 99))} µs`,
  );

  direct.close();
  sidecar.close();
  await outbound.close();
  await inbound.close();
  filters.close();
  app.forceShutdown();
}

await main();
