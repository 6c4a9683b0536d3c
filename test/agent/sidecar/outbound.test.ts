import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { startInbound, type Listener } from '../../../agent/sidecar/inbound.ts';
import { startOutbound, loadRoutes } from '../../../agent/sidecar/outbound.ts';
import { FilterSlot } from '../../../agent/sidecar/filter-slot.ts';
import { SvidHolder } from '../../../agent/sidecar/svid.ts';
import { identities, startEcho, captureLog, FRONTEND, CARD, LEDGER, type Echo } from './harness.ts';
import { compiled, loadStrict } from './policies.ts';

const outbound = suite('outbound');
const ids = await identities();
const log = captureLog();
const dir = await mkdtemp(join(tmpdir(), 'palisade-outbound-'));
let echo: Echo;
let card: Listener;
let ledger: Listener;
let out: Listener;

outbound.before(async () => {
  echo = await startEcho();
  const filters = await FilterSlot.create(await compiled('card'), loadStrict);
  card = await startInbound({ app: echo.url, identity: ids.card, filters, logger: log.logger });
  // A server that is a valid workload of the trust domain, but not the one the route names.
  const impostor = new SvidHolder(await ids.ca.issue(LEDGER), ids.ca.certPem);
  ledger = await startInbound({ app: echo.url, identity: impostor, filters, logger: log.logger });
  const routesFile = join(dir, 'routes.json');
  await writeFile(routesFile, JSON.stringify({
    card: { url: card.url, spiffeId: CARD },
    'fake-card': { url: ledger.url, spiffeId: CARD },
    gone: { url: 'https://127.0.0.1:1', spiffeId: CARD },
  }));
  out = await startOutbound({ routes: await loadRoutes(routesFile), identity: ids.frontend, logger: log.logger });
});

outbound.after(async () => {
  await out.close();
  await card.close();
  await ledger.close();
  await echo.close();
  await rm(dir, { recursive: true, force: true });
});

const viaOutbound = async (host: string, init: { method?: 'GET' | 'POST'; path?: string; headers?: Record<string, string>; body?: string } = {}) => {
  const res = await request(`${out.url}${init.path ?? '/cards/7?x=1'}`, { method: init.method ?? 'GET', headers: { host, ...init.headers }, body: init.body });
  const text = await res.body.text();
  return { status: res.statusCode, json: () => JSON.parse(text) };
};

outbound('plain HTTP from the app becomes an mTLS call with a fingerprint and a trace', async () => {
  const res = await viaOutbound('card', { headers: { 'x-palisade-fingerprint': 'forged' } });
  assert.is(res.status, 200);
  const seen = res.json();
  assert.is(seen.url, '/cards/7?x=1');
  assert.is(seen.headers['x-forwarded-client-cert'], `By=${CARD};URI=${FRONTEND}`);
  assert.match(seen.headers.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  await sleep(10);
  const line = log.lines.filter((l) => l.msg === 'decision').at(-1)!;
  assert.is(line.trace_id, seen.headers.traceparent.split('-')[1]);
  assert.is(line.decision, 'allow');
});

outbound('bodies and the identity context are passed on', async () => {
  const res = await viaOutbound('card:8080', { method: 'POST', path: '/upload', body: 'hello', headers: { authorization: 'Bearer a.b.c' } });
  assert.is(res.status, 200);
  assert.is(res.json().bytes, 5);
  assert.is(res.json().headers.authorization, 'Bearer a.b.c'); // no identity issuer configured: passed through, no user
});

outbound('a server with another SPIFFE ID is refused: mutual authentication', async () => {
  const res = await viaOutbound('fake-card');
  assert.is(res.status, 502);
  assert.is(res.json().error.code, 'upstream_identity_mismatch');
  assert.match(res.json().error.message, LEDGER);
});

outbound('unknown service 502, unreachable service 503', async () => {
  const unknown = await viaOutbound('nowhere');
  assert.is(unknown.status, 502);
  assert.is(unknown.json().error.code, 'unknown_service');
  const gone = await viaOutbound('gone');
  assert.is(gone.status, 503);
  assert.is(gone.json().error.code, 'upstream_unavailable');
});

outbound('after rotation the outbound side presents the new SVID', async () => {
  ids.frontend.rotate(await ids.ca.issue(FRONTEND));
  const res = await viaOutbound('card');
  assert.is(res.status, 200);
});

outbound('bad routes files are clear errors', async () => {
  const bad = join(dir, 'bad.json');
  for (const [text, message] of [['{"a": {"url": "http://x"}}', /route "a" needs/], ['[1]', /expected an object/], ['{', /cannot read routes/]] as const) {
    await writeFile(bad, text);
    const err = await loadRoutes(bad).catch((e) => e);
    assert.match(err.message, message);
  }
});

outbound.run();
