/**
 * Decision latency of compiled filters through the strict host (agent/host), for generated
 * policies of n rules, plus memory stability: the wasm memory size before and after 100,000
 * requests (the filter resets its heap per request, so it must not grow).
 * Each request asks about a different rule, so the whole table is exercised.
 * Usage: node --import tsx bench/decide.ts [sizes…]   (one size per process is cleanest)
 */
import { analyze } from '../compiler/frontend.ts';
import { compileChecked } from '../compiler/index.ts';
import { loadFilter } from '../agent/host/filter.ts';
import { generatePolicy, requestFor } from './gen-policy.ts';

const REQUESTS = 100_000;

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

for (const n of process.argv.slice(2).map(Number).filter((x) => x > 0).concat(process.argv.length > 2 ? [] : [10, 1000])) {
  const { policy } = analyze(`bench-${n}.json`, JSON.stringify(generatePolicy(n)));
  if (!policy) throw new Error('bench policy does not check');
  const { wasm } = await compileChecked(policy);
  const filter = await loadFilter(wasm);
  const memory = () => (filter as unknown as { vm: { memory: WebAssembly.Memory } }).vm.memory.buffer.byteLength;
  const m = Math.min(n, 1000);
  // A fresh fingerprint jti per request (built outside the timing), or replays are measured.
  const request = (i: number) => requestFor(Math.floor(((i % m) * n) / m), i);
  for (let i = 0; i < 2000; i++) await filter.handleRequest(request(i + REQUESTS));
  const before = memory();
  const times = new Float64Array(REQUESTS);
  let allowed = 0;
  for (let i = 0; i < REQUESTS; i++) {
    const r = request(i);
    const t = process.hrtime.bigint();
    const o = await filter.handleRequest(r);
    times[i] = Number(process.hrtime.bigint() - t) / 1000;
    if (o.kind === 'forward') allowed++;
  }
  times.sort();
  console.log(`${String(n).padStart(6)} rules  p50 ${percentile(times, 0.5).toFixed(1)} µs  p99 ${percentile(times, 0.99).toFixed(1)} µs (host round trip)  allowed ${allowed}/${REQUESTS}  wasm memory ${before / 65536} → ${memory() / 65536} pages`);
  await filter.close();
}
