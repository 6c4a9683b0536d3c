import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, writeFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify from 'fastify';
import autocannon from 'autocannon';
import { Registry } from 'prom-client';
import { request } from 'undici';
import { startSidecar, type Sidecar } from '../../../agent/sidecar/index.ts';
import { identities, startEcho, captureLog, FRONTEND, CARD, type Echo } from './harness.ts';
import { compiled, variant, fixture } from './policies.ts';
import { FilterSlot } from '../../../agent/sidecar/filter-slot.ts';
import { caseFileCheck } from '../../../agent/sidecar/case-check.ts';
import { loadFilter } from '../../../host/filter.ts';

const reload = suite('hot reload');
const ids = await identities();
const log = captureLog();
const dir = await mkdtemp(join(tmpdir(), 'palisade-reload-'));
const filterFile = join(dir, 'card.wasm');
const registry = new Registry();
const admin = Fastify();
let echo: Echo;
let cardSidecar: Sidecar;
let frontend: Sidecar;
let adminUrl: string;

// card: the frontend may read cards (and call /slow); opsOnly: the frontend may do nothing.
const card = await compiled('card');
const opsOnly = await compiled('ops-only');

reload.before(async () => {
  echo = await startEcho();
  await writeFile(filterFile, card);
  cardSidecar = await startSidecar({
    identity: ids.card,
    inbound: { app: echo.url, filterFile },
    logger: log.logger,
    admin,
    registry,
  });
  adminUrl = await admin.listen({ port: 0, host: '127.0.0.1' });
  frontend = await startSidecar({
    identity: ids.frontend,
    outbound: { routes: { card: { url: cardSidecar.inbound!.url, spiffeId: CARD } } },
    logger: log.logger,
  });
});

reload.after(async () => {
  await frontend.close();
  await cardSidecar.close();
  await admin.close();
  await echo.close();
  await rm(dir, { recursive: true, force: true });
});

const get = async (path: string) => {
  const res = await request(`${frontend.outbound!.url}${path}`, { headers: { host: 'card' } });
  await res.body.text();
  return res.statusCode;
};
const putFilter = async (wasm: Uint8Array) => {
  const res = await request(`${adminUrl}/v1/filter`, { method: 'PUT', headers: { 'content-type': 'application/wasm' }, body: wasm });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, any> };
};

reload('PUT /v1/filter swaps; a bad filter is refused and the old one kept', async () => {
  assert.is(await get('/cards/1'), 200);
  const swapped = await putFilter(opsOnly);
  assert.is(swapped.status, 200);
  assert.is(swapped.body.reloads, 1);
  assert.is(await get('/cards/1'), 403);

  const refused = await putFilter(Buffer.from('\0asm garbage'));
  assert.is(refused.status, 422);
  assert.is(refused.body.error.code, 'filter_refused');
  assert.is(await get('/cards/1'), 403); // old filter kept
  const status = (await (await request(`${adminUrl}/v1/filter`)).body.json()) as Record<string, any>;
  assert.is(status.sha256, swapped.body.sha256);
  assert.ok(status.lastRefusal.reason);
  assert.match(await registry.metrics(), /palisade_filter_reloads_total\{result="refused"\} 1/);
  assert.ok(log.lines.some((l) => l.msg === 'filter refused; previous filter kept'));

  const empty = await request(`${adminUrl}/v1/filter`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.is(empty.statusCode, 415);
  await empty.body.text();
});

reload('replacing the file swaps the filter', async () => {
  assert.is(await get('/cards/1'), 403); // ops-only from the previous test
  await writeFile(`${filterFile}.tmp`, card);
  await rename(`${filterFile}.tmp`, filterFile); // how deploy tools replace files
  for (let i = 0; i < 100 && cardSidecar.filters!.status().source !== `file ${filterFile}`; i++) await sleep(20);
  assert.is(await get('/cards/1'), 200);
  await writeFile(filterFile, opsOnly); // written in place
  for (let i = 0; i < 100 && (await get('/cards/1')) !== 403; i++) await sleep(20);
  assert.is(await get('/cards/1'), 403);
  await putFilter(card);
});

reload('a request in flight finishes on the filter it started with', async () => {
  let release!: () => void;
  echo.behave = (_req, res) => {
    release = () => res.end('late');
  };
  const inFlight = get('/slow');
  while (!release) await sleep(5);
  assert.is((await putFilter(opsOnly)).status, 200);
  echo.behave = undefined;
  assert.is(await get('/slow'), 403); // new requests: new filter
  release();
  assert.is(await inFlight, 200); // the old filter let it through and it completed
  await putFilter(card);
});

reload('load keeps flowing through filter swaps and SVID rotations: zero failed requests', async () => {
  const logged = log.lines.length;
  const run = autocannon({
    url: `${frontend.outbound!.url}/cards/1`,
    headers: { host: 'card' },
    connections: 8,
    duration: 3,
  });
  const events: Promise<unknown>[] = [];
  const at = (ms: number, fn: () => Promise<unknown>) => events.push(sleep(ms).then(fn));
  at(500, () => putFilter(variant(card, 'v2')));
  at(900, async () => ids.card.rotate(await ids.ca.issue(CARD)));
  at(1300, async () => ids.frontend.rotate(await ids.ca.issue(FRONTEND)));
  at(1700, () => putFilter(Buffer.from('not a filter')));
  at(2100, () => writeFile(filterFile, variant(card, 'v3')));
  const result = await run;
  await Promise.all(events);
  assert.ok(result.requests.total > 50, `only ${result.requests.total} requests`);
  assert.is(result.errors, 0);
  assert.is(result.timeouts, 0);
  const failed = log.lines.slice(logged).filter((l) => l.msg === 'decision' && l.status !== 200);
  assert.equal(failed, []);
  assert.equal(log.lines.slice(logged).filter((l) => l.msg === 'outbound request failed'), []);
  assert.is(result.non2xx, 0);
  assert.ok(cardSidecar.filters!.status().reloads >= 2);
});

reload('with a case file, a filter that fails its cases is refused', async () => {
  const slot = await FilterSlot.create(card, (wasm) => loadFilter(wasm), caseFileCheck(fixture('card.cases.json')));
  try {
    const refused = await slot.replace(opsOnly, 'test');
    assert.is(refused.ok, false);
    assert.match((refused as { reason: string }).reason, /frontend reads a card/);
    assert.is((await slot.replace(variant(card, 'ok'), 'test')).ok, true);
  } finally {
    slot.close();
  }
  const missing = await FilterSlot.create(card, (wasm) => loadFilter(wasm), caseFileCheck(fixture('absent.cases.json'))).catch((e) => e);
  assert.match(missing.message, /absent\.cases\.json/);
});

reload.run();
