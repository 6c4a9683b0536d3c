/**
 * The inbound sidecar's cost, every party in a process of its own: the real agent
 * (`palisade agent`, joined to a CA, the built CLI) twice with the same policy and flags,
 * once with `--audit-dir`; a plain Node TLS reverse proxy to the same application
 * (bench/plain-proxy.ts); the application (bench/sidecar-app.ts); and the load generator
 * (autocannon) with the CA in this process. No proxy shares a heap, an event loop or a
 * collector with another or with the load.
 *
 * Unloaded latency alternates single requests between the three. Throughput runs in rounds
 * whose order reverses every round (plain, sidecar, audited, then audited, sidecar, plain),
 * after one warm-up run each, and reports per run the requests per second and the CPU the
 * proxy process spent per request (all its threads, /proc/<pid>/stat), which stays
 * comparable when throughput swings with a shared machine's load. Then the audited agent
 * stops and `palisade audit verify` checks its log, whose entry count is held against the
 * application's own count of the requests that agent forwarded. Then the replay cache's
 * memory with 100k distinct fingerprints.
 * Run alone: node --import tsx bench/sidecar.ts   (BENCH_SECONDS, BENCH_ROUNDS; the agents
 * run dist/ when it is current: `npm run build` first)
 */
import { randomBytes, createPrivateKey, type KeyObject } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { runInNewContext } from 'node:vm';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import autocannon from 'autocannon';
import { compilePolicy } from '../compiler/index.ts';
import { CertificateAuthority } from '../ca/ca.ts';
import { startCaServer } from '../ca/server.ts';
import { FINGERPRINT_HEADER, signFingerprint } from '../spiffe/fingerprint.ts';
import { ReplayCache } from '../spiffe/replay-cache.ts';
import { cpuMicros, startChild, stopChild, type Child } from './child-process.ts';

const TRUST_DOMAIN = 'bank.example';
const CALLER = `spiffe://${TRUST_DOMAIN}/ns/web/sa/frontend`;
const SERVICE = `spiffe://${TRUST_DOMAIN}/ns/payments/sa/card`;
const PATH = '/cards/42';
/**
 * Many short rounds rather than a few long ones: on the 2-core VM a proxy's CPU per request
 * drifts by ±30% over tens of seconds with the host, and order reversed every round cancels
 * a drift only over the rounds it spans (idle VM: 4 × 5 s gave 98.1% and 91.4% audited /
 * unaudited, 10 × 2 s 101.0%, per round 69–138%).
 */
const DURATION_S = Number(process.env.BENCH_SECONDS ?? 2);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const WARMUP_S = 2;
const CONNECTIONS = 16;
const LATENCY_SAMPLES = 2000;
/** Requests per second a throughput run is given fingerprints for, at least (see topRate). */
const MIN_RATE = 3_000;
const BIN = fileURLToPath(new URL('../bin/palisade.js', import.meta.url));
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

const policy = JSON.stringify({
  palisade: 1, name: 'bench', service: SERVICE,
  rules: [{ id: 'read-card', effect: 'allow', from: [CALLER], to: [{ methods: ['GET'], paths: ['/cards/{id}'] }] }],
});

type ProxyName = 'plain' | 'sidecar' | 'audited';
const LABELS: Record<ProxyName, string> = { plain: 'plain TLS proxy', sidecar: 'sidecar', audited: 'sidecar + audit log' };

interface Proxy {
  name: ProxyName;
  url: string;
  child: Child;
}

interface Load {
  rps: number;
  completed: number;
  /** Answered, but not with a 2xx. */
  non2xx: number;
  failed: number;
  /** CPU per request (µs): the proxy process (all threads), this process (the load generator). */
  proxyCpu: number | null;
  loadCpu: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The first line of a process that prints its URL first. */
const firstLine = (output: string) => (output.includes('\n') ? output.slice(0, output.indexOf('\n')) : undefined);

/** The inbound URL of a `palisade agent`, once it says it is ready. */
function agentInbound(output: string): string | undefined {
  let inbound: string | undefined;
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    const msg = JSON.parse(line) as { msg?: string; inbound?: string };
    if (msg.msg === 'sidecar listening') inbound = msg.inbound;
    if (msg.msg === 'agent ready') return inbound;
  }
  return undefined;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'palisade-bench-sidecar-'));
  const children: Child[] = [];
  const ca = await (async () => {
    await CertificateAuthority.init(join(dir, 'ca'), TRUST_DOMAIN);
    return startCaServer({ dir: join(dir, 'ca'), port: 0 });
  })();
  try {
    const compiled = await compilePolicy('bench.policy.json', policy);
    if (!compiled.ok) throw new Error('bench policy does not compile');
    const wasm = join(dir, 'bench.wasm');
    writeFileSync(wasm, compiled.wasm);
    const bundle = join(dir, 'ca', 'bundle.pem');
    const caller = await ca.ca.mint(CALLER, 3_600_000);
    const callerKey = createPrivateKey(caller.key_pem);
    // The plain proxy presents a certificate of the same kind as the sidecar's.
    const service = await ca.ca.mint(SERVICE, 3_600_000);
    writeFileSync(join(dir, 'service.pem'), service.svid_pem);
    writeFileSync(join(dir, 'service.key'), service.key_pem, { mode: 0o600 });

    const start = async <T>(name: string, args: string[], ready: (output: string) => T | undefined) => {
      const child = await startChild(args, join(dir, `${name}.log`), ready);
      children.push(child);
      return child;
    };
    const tsx = ['--import', 'tsx'];
    const app = await start('app', [...tsx, here('sidecar-app.ts')], firstLine);
    const plain = await start('plain', [...tsx, here('plain-proxy.ts'), app.ready, join(dir, 'service.pem'), join(dir, 'service.key')], firstLine);
    const auditDir = join(dir, 'audit');
    // The same agent twice, the second with the audit log (its defaults: fsync before each checkpoint).
    const agent = async (name: ProxyName, extra: string[]) => {
      const { token } = await ca.ca.createToken(SERVICE, 60_000);
      // BENCH_AGENT_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=DIR`, which NODE_OPTIONS refuses) go to the agents only.
      const nodeArgs = process.env.BENCH_AGENT_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
      return start(name, [...nodeArgs, BIN, 'agent', '--ca-url', ca.url, '--bundle', bundle, '--token', token, '--inbound', '127.0.0.1:0', '--app', app.ready, '--filter', wasm, ...extra], agentInbound);
    };
    const proxies: Proxy[] = [
      { name: 'plain', url: plain.ready, child: plain },
      { name: 'sidecar', url: (await agent('sidecar', [])).ready, child: children.at(-1)! },
      { name: 'audited', url: (await agent('audited', ['--audit-dir', auditDir])).ready, child: children.at(-1)! },
    ];
    const agentLog = readFileSync(proxies[1].child.logFile, 'utf8');
    if (agentLog.includes('running the TypeScript sources')) console.log(`(the agents run the sources, not dist/: ${agentLog.split('\n')[0]})\n`);
    const clientTls = { ca: caller.bundle_pem, cert: caller.svid_pem, key: caller.key_pem, checkServerIdentity: () => undefined };

    const latency = await latencies(proxies, clientTls, callerKey);
    for (const proxy of proxies) await throughput(proxy, clientTls, callerKey, WARMUP_S); // JIT and pools warm, not reported
    const loads: Record<ProxyName, Load>[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      // The order reverses every round, so a machine slowing down (or warming up) over a
      // round counts against each proxy alike.
      const round = {} as Record<ProxyName, Load>;
      for (const proxy of i % 2 ? [...proxies].reverse() : proxies) round[proxy.name] = await throughput(proxy, clientTls, callerKey, DURATION_S);
      loads.push(round);
    }

    const ms = (x: number) => x.toFixed(3);
    console.log('### Inbound sidecar vs plain Node TLS reverse proxy (each in its own process, same run)');
    console.log(`unloaded latency over ${LATENCY_SAMPLES} sequential requests to each, alternating, one keep-alive connection each (ms):`);
    console.log('| | p50 | p99 |');
    console.log('| --- | ---: | ---: |');
    for (const { name } of proxies) console.log(`| ${LABELS[name]} | ${ms(percentile(latency[name], 50))} | ${ms(percentile(latency[name], 99))} |`);
    const added = (p: number) => ms(percentile(latency.sidecar, p) - percentile(latency.plain, p));
    console.log(`| sidecar added | ${added(50)} | ${added(99)} (target ≤ 1 ms) |`);
    console.log(`\nthroughput, autocannon ${CONNECTIONS} connections × ${DURATION_S} s, ${ROUNDS} rounds, order reversed every round:`);
    console.log('| round | proxy | req/s | requests | errors + non-2xx | proxy CPU µs/request | load generator CPU µs/request |');
    console.log('| ---: | --- | ---: | ---: | ---: | ---: | ---: |');
    const us = (x: number | null) => (x === null ? 'n/a' : x.toFixed(0));
    loads.forEach((round, i) => {
      const order = i % 2 ? [...proxies].reverse() : proxies;
      for (const { name } of order) {
        const r = round[name];
        console.log(`| ${i + 1} | ${LABELS[name]} | ${r.rps.toFixed(0)} | ${r.completed} | ${r.failed} | ${us(r.proxyCpu)} | ${us(r.loadCpu)} |`);
      }
    });
    if (loads.some((round) => Object.values(round).some((r) => r.failed > 0))) {
      console.log('\nSOME REQUESTS FAILED: a failed request costs a proxy less than a forwarded one; the figures below are not comparable.');
      for (const { name, child } of proxies.slice(1)) console.log(`${LABELS[name]}, refusals by reason: ${JSON.stringify(refusalReasons(child.logFile))}`);
    }
    const rate = (name: ProxyName) => loads.reduce((sum, l) => sum + l[name].rps, 0);
    const cpu = (name: ProxyName) => {
      if (loads.some((l) => l[name].proxyCpu === null)) return null;
      return loads.reduce((sum, l) => sum + l[name].proxyCpu! * l[name].completed, 0) / loads.reduce((sum, l) => sum + l[name].completed, 0);
    };
    const percent = (x: number) => `${x.toFixed(1)}%`;
    const ratio = (a: ProxyName, b: ProxyName, target: string) => {
      const perRound = loads.map((l) => percent((100 * l[a].rps) / l[b].rps)).join(', ');
      const cpuA = cpu(a);
      const cpuB = cpu(b);
      const cpuLine = cpuA !== null && cpuB !== null ? `; CPU per request ${cpuA.toFixed(0)} µs against ${cpuB.toFixed(0)} µs (${percent((100 * cpuB) / cpuA)} of the requests per CPU second)` : '';
      return `${percent((100 * rate(a)) / rate(b))} pooled over all rounds (${perRound} per round; target ${target})${cpuLine}`;
    };
    console.log(`\nsidecar throughput / plain proxy: ${ratio('sidecar', 'plain', '≥ 80%')}`);
    console.log(`sidecar throughput with the audit log / without: ${ratio('audited', 'sidecar', '≥ 95%')}`);

    // The figure is real auditing only if the log holds an entry per forwarded request and verifies.
    const audited = proxies.find((p) => p.name === 'audited')!;
    const forwarded = (await (await request(`${app.ready}/forwarded`)).body.json()) as Record<string, number>;
    const host = new URL(audited.url).host;
    await stopChild(audited.child.process);
    const verify = await promisify(execFile)(process.execPath, [BIN, 'audit', 'verify', auditDir, '--bundle', bundle], { maxBuffer: 1 << 20 }).catch((err: { stdout?: string; stderr?: string }) => err);
    const verdict = `${verify.stdout ?? ''}${verify.stderr ?? ''}`.trim();
    const entries = Number(/verified (\d+) entries/.exec(verdict)?.[1] ?? NaN);
    // Every decision has its entry: the requests forwarded, those the sidecar refused (a
    // replayed fingerprint, non-2xx), and those decided but still in flight when a run
    // stopped and its connections closed (at most one per connection and run).
    const sent = forwarded[host] ?? 0;
    const refused = refusals.get('audited') ?? 0;
    const inFlight = entries - sent - refused;
    const runs = ROUNDS + 1;
    console.log(`\naudited agent's log, \`palisade audit verify\`: ${verdict.split('\n').pop()}`);
    console.log(`${entries} entries: ${sent} requests it forwarded (counted by the application), ${refused} it refused, ${inFlight} in flight when a run stopped` +
      (inFlight >= 0 && inFlight <= CONNECTIONS * runs ? ` (at most ${CONNECTIONS * runs}): one entry per decision` : ': MISMATCH'));
  } finally {
    for (const { process: child } of children) await stopChild(child); // SIGTERM: an agent writes its --cpu-prof on the way out
    await ca.close();
    rmSync(dir, { recursive: true, force: true });
  }
  replayCacheMemory();
}

type ClientTls = { ca: string; cert: string; key: string; checkServerIdentity: () => undefined };

/** Unloaded latency: one keep-alive connection to each proxy and the same signed request to each in turn, so a noisy moment lands on all alike. */
async function latencies(proxies: Proxy[], tls: ClientTls, key: KeyObject): Promise<Record<ProxyName, number[]>> {
  const targets = proxies.map((proxy) => ({ proxy, dispatcher: new Agent({ connect: tls, connections: 1 }), times: [] as number[] }));
  for (let i = 0; i < LATENCY_SAMPLES + 200; i++) {
    for (const { proxy, dispatcher, times } of targets) {
      const headers = { [FINGERPRINT_HEADER]: signFingerprint(key, { caller: CALLER, target: SERVICE, method: 'GET', path: PATH }) };
      const t = performance.now();
      const res = await request(proxy.url + PATH, { headers, dispatcher });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${proxy.name}: status ${res.statusCode}`);
      if (i >= 200) times.push(performance.now() - t); // the first 200 warm up the JIT
    }
  }
  await Promise.all(targets.map((target) => target.dispatcher.close()));
  return Object.fromEntries(targets.map(({ proxy, times }) => [proxy.name, times.sort((a, b) => a - b)])) as Record<ProxyName, number[]>;
}

/** Requests each proxy answered with other than 2xx, over every run. */
const refusals = new Map<ProxyName, number>();

/**
 * The most requests per second a run of each proxy reached: its next run gets fingerprints
 * for twice that, or twice MIN_RATE (a short, cold warm-up run can be much slower).
 */
const topRate = new Map<ProxyName, number>();

/** One autocannon run against `proxy`, with the CPU its process and this one spent. */
async function throughput(proxy: Proxy, tls: ClientTls, key: KeyObject, seconds: number): Promise<Load> {
  // Signed before the run (each valid 30 s, used once): the caller's signing cost is not the
  // proxy's. Every proxy gets the same requests; the plain one ignores the header. A run
  // that needed more than these would replay them, and show it as non-2xx.
  const count = Math.ceil(2 * seconds * Math.max(topRate.get(proxy.name) ?? 0, MIN_RATE)) + 2_000;
  const tokens = Array.from({ length: count }, () => signFingerprint(key, { caller: CALLER, target: SERVICE, method: 'GET', path: PATH }));
  let next = 0;
  const proxyBefore = cpuMicros(proxy.child.process.pid!);
  const loadBefore = process.cpuUsage();
  const result = await autocannon({
    url: proxy.url + PATH,
    connections: CONNECTIONS,
    duration: seconds,
    tlsOptions: tls,
    requests: [{
      method: 'GET',
      path: PATH,
      setupRequest: (req) => ({ ...req, headers: { ...req.headers, [FINGERPRINT_HEADER]: tokens[next++ % tokens.length] } }),
    }],
  });
  const load = process.cpuUsage(loadBefore);
  const proxyAfter = cpuMicros(proxy.child.process.pid!);
  const completed = result.requests.total;
  topRate.set(proxy.name, Math.max(topRate.get(proxy.name) ?? 0, completed / result.duration));
  refusals.set(proxy.name, (refusals.get(proxy.name) ?? 0) + result.non2xx);
  return {
    rps: completed / result.duration,
    completed,
    non2xx: result.non2xx,
    failed: result.errors + result.non2xx + result.timeouts,
    proxyCpu: proxyBefore !== null && proxyAfter !== null ? (proxyAfter - proxyBefore) / completed : null,
    loadCpu: (load.user + load.system) / completed,
  };
}

/** The reasons of an agent's logged decisions that did not answer 200, with their counts. */
function refusalReasons(logFile: string): Record<string, number> {
  const reasons: Record<string, number> = {};
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.includes('"msg":"decision"') || line.includes('"status":200,')) continue;
    const { status, reason } = JSON.parse(line) as { status: number; reason: string };
    reasons[`${status} ${reason}`] = (reasons[`${status} ${reason}`] ?? 0) + 1;
  }
  return reasons;
}

/** The replay cache's memory with 100,000 distinct fingerprints, and its bound. */
function replayCacheMemory(): void {
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

await main();
