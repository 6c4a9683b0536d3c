/**
 * The edge's cost: what a user request pays for entering through the edge (TLS, JWT access
 * token verification against the provider's JWKS, a minted identity context, its own
 * outbound side) over the same request sent by an application through its outbound sidecar
 * with the same token, to the same inbound sidecar, policy and application, measured in the
 * same run, alternating request by request over keep-alive connections.
 * Run alone: node --import tsx bench/edge.ts   (BENCH_SAMPLES)
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Agent, Pool } from 'undici';
import { CertificateAuthority } from '../ca/ca.ts';
import { compilePolicy } from '../compiler/index.ts';
import { startSidecar } from '../agent/sidecar/index.ts';
import { SvidHolder, type Svid } from '../agent/sidecar/svid.ts';
import { createLogger } from '../agent/sidecar/decision-log.ts';
import { prepareEdge } from '../agent/edge/index.ts';
import { startLocalProvider } from '../testing/identity-provider.ts';

const TD = 'bank.example';
const EDGE = `spiffe://${TD}/ns/web/sa/edge`;
const FRONTEND = `spiffe://${TD}/ns/web/sa/frontend`;
const CARD = `spiffe://${TD}/ns/payments/sa/card-service`;
const AUDIENCE = 'bank-apis';
const PATH = '/cards/42';
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 2000);
const WARMUP = 200;

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'palisade-bench-edge-'));
  await CertificateAuthority.init(join(dir, 'ca'), TD);
  const ca = await CertificateAuthority.open(join(dir, 'ca'));
  const bundle = readFileSync(join(dir, 'ca', 'bundle.pem'), 'utf8');
  const holder = async (id: string) => {
    const issued = await ca.mint(id, 3_600_000);
    const svid: Svid = { spiffeId: id, chainPem: issued.svid_pem, privateKey: createPrivateKey(issued.key_pem), notAfter: new Date(issued.not_after) };
    return new SvidHolder(svid, bundle);
  };
  const logger = createLogger(new Writable({ write: (_c, _e, done) => done() }));
  const provider = await startLocalProvider({ audience: AUDIENCE, scopes: ['list_cards'], users: {} });
  const token = await provider.clientToken(['list_cards']);

  const app = createServer((_req, res) => res.end('{"id":"42"}'));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const compiled = await compilePolicy('bench-edge.policy.json', JSON.stringify({
    palisade: 1, name: 'card-service', service: CARD,
    rules: [{ id: 'read-card', effect: 'allow', from: [EDGE, FRONTEND], to: [{ methods: ['GET'], paths: ['/cards/{id}'] }], when: "'list_cards' in user.scopes" }],
  }));
  if (!compiled.ok) throw new Error('bench policy does not compile');
  writeFileSync(join(dir, 'card.wasm'), compiled.wasm);
  const card = await startSidecar({
    identity: await holder(CARD),
    inbound: { app: `http://127.0.0.1:${(app.address() as AddressInfo).port}`, filterFile: join(dir, 'card.wasm'), watch: false },
    identityContext: { issuer: provider.issuer, audience: AUDIENCE, jwks: `${provider.issuer}/jwks` },
    identityIssuers: [EDGE],
    logger,
  });
  const frontend = await startSidecar({ identity: await holder(FRONTEND), outbound: { routes: { 'card-service': { url: card.inbound!.url, spiffeId: CARD } } }, logger });
  writeFileSync(join(dir, 'routes.json'), JSON.stringify({ '/cards': { url: card.inbound!.url, spiffeId: CARD } }));
  const edge = await (await prepareEdge({ host: '127.0.0.1', port: 0, routesFile: join(dir, 'routes.json'), issuer: provider.issuer, audience: AUDIENCE, typ: 'at+jwt' }))
    .start(await holder(EDGE), logger);

  const paths = [
    { name: 'application → outbound sidecar → inbound sidecar', pool: new Pool(frontend.outbound!.url, { connections: 1 }), headers: { host: 'card-service' }, times: [] as number[] },
    { name: 'client → edge → inbound sidecar', pool: new Agent({ connect: { ca: bundle, checkServerIdentity: () => undefined }, connections: 1 }), origin: edge.url, headers: {}, times: [] as number[] },
  ];
  for (let i = 0; i < SAMPLES + WARMUP; i++) {
    for (const p of paths) {
      const t = performance.now();
      const res = await p.pool.request({ origin: p.origin ?? frontend.outbound!.url, path: PATH, method: 'GET', headers: { ...p.headers, authorization: `Bearer ${token}` } });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${p.name}: status ${res.statusCode}`);
      if (i >= WARMUP) p.times.push(performance.now() - t);
    }
  }
  const [sidecar, viaEdge] = paths.map((p) => p.times.sort((a, b) => a - b));
  const ms = (x: number) => x.toFixed(3);
  console.log(`### The edge vs the sidecar alone (same run, ${SAMPLES} sequential requests each, alternating, one keep-alive connection each; ms)`);
  console.log('| path | p50 | p99 |');
  console.log('| --- | ---: | ---: |');
  for (const [p, t] of [[paths[0], sidecar], [paths[1], viaEdge]] as const) console.log(`| ${p.name} | ${ms(percentile(t, 50))} | ${ms(percentile(t, 99))} |`);
  console.log(`| added by the edge | ${ms(percentile(viaEdge, 50) - percentile(sidecar, 50))} | ${ms(percentile(viaEdge, 99) - percentile(sidecar, 99))} |`);

  await Promise.all(paths.map((p) => p.pool.close()));
  await edge.close();
  await frontend.close();
  await card.close();
  await provider.close();
  app.close();
  await ca.close();
  rmSync(dir, { recursive: true, force: true });
}

await main();
