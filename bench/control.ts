/**
 * The control plane with 100 subscribed agents: propagation latency of a policy change
 * (from the version's commit time to each agent having verified the sha256 and swapped the
 * filter in its strict host: the real subscriber, real mTLS, the real hot reload), p50/p99
 * over every agent and round; and the control-plane process's resident memory per
 * subscribed agent (`palisade control serve` in its own process, VmRSS before and after).
 * Usage: node --import tsx bench/control.ts [agents] [rounds]
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { CertificateAuthority } from '../ca/ca.ts';
import { startCaServer } from '../ca/server.ts';
import { startAgent, type IdentityAgent } from '../agent/identity/agent.ts';
import { ControlSubscriber } from '../agent/control/subscriber.ts';
import { defaultControlId } from '../agent/control/protocol.ts';
import { FilterSlot } from '../agent/sidecar/filter-slot.ts';
import { serverIdentity } from '../agent/sidecar/peer.ts';
import { loadFilter } from '../host/filter.ts';
import { palisade, palisadeRun, tempDir, removeDir } from '../test/support/identity.ts';

const agents = Number(process.argv[2] ?? 100);
const rounds = Number(process.argv[3] ?? 10);
const TD = 'bank.example';
const SERVICE = `spiffe://${TD}/ns/payments/sa/card`;
const CONTROL_ID = defaultControlId(TD);
const dir = tempDir('bench-control');
const policy = (paths: string[]) => JSON.stringify({
  palisade: 1, name: 'card', service: SERVICE,
  rules: paths.map((p, i) => ({ id: `r${i}`, effect: 'allow', from: [`spiffe://${TD}/ns/web/sa/frontend`], to: [{ methods: ['GET'], paths: [p] }] })),
});
const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

await CertificateAuthority.init(path.join(dir, 'ca'), TD);
const ca = await startCaServer({ dir: path.join(dir, 'ca'), port: 0, joinFailureLimit: 1000 });
const bundlePem = readFileSync(path.join(dir, 'ca', 'bundle.pem'), 'utf8');
const plane = path.join(dir, 'plane');
await palisadeRun(['control', 'init', '--dir', plane]);
const token = /^(pct_\S+)$/m.exec((await palisadeRun(['control', 'token', 'create', '--dir', plane, '--role', 'admin', '--name', 'bench'])).output)![1];
const server = palisade(['control', 'serve', '--dir', plane, '--listen', '127.0.0.1:0', '--ca-url', ca.url, '--bundle', path.join(dir, 'ca', 'bundle.pem'), '--token', (await ca.ca.createToken(CONTROL_ID, 600_000)).token]);
const subscribers: ControlSubscriber[] = [];
const identities: IdentityAgent[] = [];
const slots: FilterSlot[] = [];
const operator = new Agent({ connect: { ca: bundlePem, checkServerIdentity: (_h: string, c: PeerCertificate) => serverIdentity(c, CONTROL_ID, TD) } });
try {
  const url = (await server.waitFor(/listening on (https:\/\/\S+)/))[1]!;
  const put = async (body: string) => {
    const r = await request(`${url}/v1/policies/card`, { method: 'PUT', body, dispatcher: operator, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
    const json = (await r.body.json()) as { version: number; changed_at: string };
    if (r.statusCode !== 200) throw new Error(`PUT answered ${r.statusCode}: ${JSON.stringify(json)}`);
    return json;
  };
  await put(policy(['/cards/{id}']));
  await sleep(1000);
  const idle = rssKiB(server.child.pid!);

  const applied = new Map<number, number[]>(); // version → when each agent had it swapped in
  for (let i = 0; i < agents; i++) {
    const identity = await startAgent({ caUrl: ca.url, bundlePem, token: (await ca.ca.createToken(SERVICE, 600_000)).token });
    identities.push(identity);
    let slot: FilterSlot | undefined;
    const subscriber = new ControlSubscriber({
      urls: [url], identity,
      apply: async (f) => {
        if (!slot) slots.push((slot = await FilterSlot.create(f.wasm, (wasm) => loadFilter(wasm), undefined, 'control')));
        else await slot.replace(f.wasm, 'control');
        applied.set(f.version, [...(applied.get(f.version) ?? []), Date.now()]);
        return { ok: true };
      },
    });
    subscribers.push(subscriber);
    subscriber.start();
  }
  while ((applied.get(1)?.length ?? 0) < agents) await sleep(50);
  await sleep(1000);
  const subscribed = rssKiB(server.child.pid!);

  const latencies: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const v = await put(policy(r % 2 ? ['/cards/{id}'] : ['/cards/{id}', `/limits/${r}`]));
    while ((applied.get(v.version)?.length ?? 0) < agents) await sleep(5);
    const committed = Date.parse(v.changed_at);
    latencies.push(...applied.get(v.version)!.map((t) => t - committed));
  }
  latencies.sort((a, b) => a - b);
  console.log(`control plane, ${agents} subscribed agents (one service), ${rounds} policy changes: ` +
    `propagation commit → filter swapped on the agent p50 ${percentile(latencies, 50)} ms, p99 ${percentile(latencies, 99)} ms, max ${latencies.at(-1)} ms; ` +
    `control-plane RSS ${(idle / 1024).toFixed(1)} MiB idle, ${(subscribed / 1024).toFixed(1)} MiB with ${agents} streams: ${((subscribed - idle) / agents).toFixed(0)} KiB per subscribed agent`);
} finally {
  for (const s of subscribers) await s.close();
  for (const slot of slots) slot.close();
  for (const a of identities) a.close();
  await operator.close();
  await server.stop();
  await ca.close();
  removeDir(dir);
}
