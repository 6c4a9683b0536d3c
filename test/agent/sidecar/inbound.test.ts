import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { connect as tlsConnect } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Agent } from 'undici';
import { startInbound, type Listener } from '../../../agent/sidecar/inbound.ts';
import { FilterSlot } from '../../../agent/sidecar/filter-slot.ts';
import { createIdentityVerifier } from '../../../agent/sidecar/identity-context.ts';
import { FINGERPRINT_HEADER } from '../../../spiffe/fingerprint.ts';
import { createCa } from './pki.ts';
import { createIssuer } from './issuer.ts';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { identities, startEcho, captureLog, mtlsAgent, call, FRONTEND, CARD, type Echo } from './harness.ts';
import { compiled, loadStrict } from './policies.ts';
import { loadFilter } from '../../../host/filter.ts';
import type { SvidHolder } from '../../../agent/sidecar/svid.ts';

const inbound = suite('inbound');
const ids = await identities();
const issuer = await createIssuer();
const dir = await mkdtemp(join(tmpdir(), 'palisade-inbound-'));
const log = captureLog();
let echo: Echo;
let sidecar: Listener;
let frontendAgent: Agent;
const agents: Agent[] = [];
const agentFor = (svid: Parameters<typeof mtlsAgent>[1], ca = ids.ca.certPem) => {
  const a = mtlsAgent(ca, svid);
  agents.push(a);
  return a;
};

inbound.before(async () => {
  echo = await startEcho();
  await writeFile(join(dir, 'jwks.json'), JSON.stringify(issuer.jwks));
  const filters = await FilterSlot.create(await compiled('card'), loadStrict);
  sidecar = await startInbound({
    app: echo.url,
    identity: ids.card,
    filters,
    identityContext: await createIdentityVerifier({ issuer: issuer.iss, audience: issuer.aud, jwks: join(dir, 'jwks.json') }),
    logger: log.logger,
    limits: { maxBodyBytes: 1024, headersTimeoutMs: 400, requestTimeoutMs: 800, appHeadersTimeoutMs: 300 },
  });
  frontendAgent = agentFor(ids.frontend.svid());
});

inbound.after(async () => {
  await Promise.all(agents.map((a) => a.close()));
  await sidecar.close();
  await echo.close();
  await rm(dir, { recursive: true, force: true });
});

const lastLog = () => log.lines.at(-1)!;
const front = () => ids.frontend.svid();

inbound('an allowed call reaches the app with identity headers and without spoofed ones', async () => {
  const token = await issuer.token({ sub: 'alice', scope: 'list_cards' });
  const res = await call(sidecar.url, frontendAgent, front(), {
    path: '/cards',
    headers: {
      authorization: `Bearer ${token}`,
      'x-palisade-caller': 'spiffe://bank.example/ns/ops/sa/admin',
      'x-forwarded-client-cert': 'URI=spiffe://evil',
      'x-user-id': 'mallory',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    },
  });
  assert.is(res.status, 200);
  const seen = res.json().headers;
  assert.is(seen['x-user-id'], 'alice');
  assert.is(seen['x-palisade-caller'], undefined);
  assert.is(seen[FINGERPRINT_HEADER], undefined);
  assert.is(seen['x-forwarded-client-cert'], `By=${CARD};URI=${FRONTEND}`);
  assert.is(seen.authorization, `Bearer ${token}`); // the app passes the identity context on
  assert.match(seen.traceparent, /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
  assert.ok(seen['x-request-id']);
  await sleep(10);
  const line = lastLog();
  for (const key of ['time', 'trace_id', 'caller', 'target', 'method', 'path', 'decision', 'rule', 'mode', 'latency_ms']) assert.ok(key in line, key);
  assert.is(line.trace_id, '0af7651916cd43dd8448eb211c80319c');
  assert.is(line.caller, FRONTEND);
  assert.is(line.target, CARD);
  assert.is(line.decision, 'allow');
  assert.is(line.rule, 'list-cards');
  assert.is(line.mode, 'enforce');
  assert.is(line.status, 200);
});

inbound('a token without the required scope is denied by the policy', async () => {
  const token = await issuer.token({ sub: 'alice', scope: 'profile' });
  const res = await call(sidecar.url, frontendAgent, front(), { path: '/cards', headers: { authorization: `Bearer ${token}` } });
  assert.is(res.status, 403);
  assert.is(res.json().error, 'forbidden');
});

inbound('a request without a token is evaluated without a user; the policy decides', async () => {
  const res = await call(sidecar.url, frontendAgent, front());
  assert.is(res.status, 200);
  assert.is(res.json().headers['x-user-id'], undefined); // spoofable header never passes
});

inbound('policy denial is the filter reply, 403', async () => {
  const res = await call(sidecar.url, frontendAgent, front(), { method: 'DELETE' });
  assert.is(res.status, 403);
  assert.is(res.json().error, 'forbidden');
  await sleep(10);
  assert.is(lastLog().decision, 'deny');
});

inbound('authentication failures are 401 and never reach the app', async () => {
  const before = echo.seen.length;
  const other = await createCa('bank.example');
  const foreign = await other.issue(FRONTEND);
  const wrongDomain = await ids.ca.issue('spiffe://other.example/ns/web/sa/frontend');
  const twoUris = await ids.ca.issue(FRONTEND, { extraUris: ['spiffe://bank.example/ns/x/sa/y'] });
  // No URI SAN at all, only a DNS name that spells the frontend's (node prints it quoted).
  const caCertificate = await ids.ca.issue(FRONTEND, { ca: true });
  const dnsSpellingUri = await ids.ca.issue(FRONTEND, { names: [{ type: 'dns', value: `x, URI:${FRONTEND}, DNS:y` }] });
  const expired = await ids.ca.issue(FRONTEND, { ttlSeconds: -10 });
  const token = await issuer.token({ sub: 'alice' });
  const cases: [string, Promise<{ status: number; text: string }>][] = [
    ['no client certificate', call(sidecar.url, agentFor(null), null)],
    ['certificate from another CA', call(sidecar.url, agentFor(foreign), foreign)],
    ['other trust domain', call(sidecar.url, agentFor(wrongDomain), wrongDomain)],
    ['two URI SANs', call(sidecar.url, agentFor(twoUris), twoUris)],
    ['a CA certificate (cA set, no keyCertSign)', call(sidecar.url, agentFor(caCertificate), caCertificate)],
    ['a DNS SAN spelling a URI SAN', call(sidecar.url, agentFor(dnsSpellingUri), dnsSpellingUri)],
    ['expired SVID', call(sidecar.url, agentFor(expired), expired)],
    ['no fingerprint', call(sidecar.url, frontendAgent, front(), { fingerprint: false })],
    ['fingerprint for another service', call(sidecar.url, frontendAgent, front(), { fingerprint: { target: FRONTEND } })],
    ['fingerprint for another path', call(sidecar.url, frontendAgent, front(), { fingerprint: { path: '/cards/43' } })],
    ['fingerprint for another method', call(sidecar.url, frontendAgent, front(), { fingerprint: { method: 'POST' } })],
    ['garbage fingerprint', call(sidecar.url, frontendAgent, front(), { fingerprint: false, headers: { [FINGERPRINT_HEADER]: 'a.b.c' } })],
    ['token not bound to the fingerprint', call(sidecar.url, frontendAgent, front(), { headers: { authorization: `Bearer ${token}` }, fingerprint: { token: 'other' } })],
    ['invalid identity token', call(sidecar.url, frontendAgent, front(), { headers: { authorization: 'Bearer abc.def.ghi' } })],
    ['non-bearer authorization', call(sidecar.url, frontendAgent, front(), { headers: { authorization: 'Basic YTpi' } })],
  ];
  for (const [name, pending] of cases) {
    const res = await pending;
    assert.is(res.status, 401, name);
    assert.is(JSON.parse(res.text).error, 'unauthenticated', name);
  }
  assert.is(echo.seen.length, before);
});

inbound('a replayed fingerprint is refused', async () => {
  const { signFingerprint } = await import('../../../spiffe/fingerprint.ts');
  const fp = await signFingerprint(front().privateKey, { caller: FRONTEND, target: CARD, method: 'GET', path: '/cards/42' });
  const first = await call(sidecar.url, frontendAgent, front(), { fingerprint: false, headers: { [FINGERPRINT_HEADER]: fp } });
  const again = await call(sidecar.url, frontendAgent, front(), { fingerprint: false, headers: { [FINGERPRINT_HEADER]: fp } });
  assert.is(first.status, 200);
  assert.is(again.status, 401);
  await sleep(10);
  assert.is(lastLog().reason, 'fingerprint_replay'); // the filter's word for it (docs/cases.md)
});

inbound('oversized headers 431, oversized bodies 413', async () => {
  const big = await call(sidecar.url, frontendAgent, front(), { headers: { 'x-big': 'a'.repeat(20_000) } });
  assert.is(big.status, 431);
  const declared = await call(sidecar.url, agentFor(front()), front(), { method: 'POST', path: '/upload', body: 'x'.repeat(2000) });
  assert.is(declared.status, 413);
  const ok = await call(sidecar.url, agentFor(front()), front(), { method: 'POST', path: '/upload', body: 'x'.repeat(1000) });
  assert.is(ok.status, 200);
  assert.is(ok.json().bytes, 1000);
});

inbound('a chunked body over the limit is cut off with 413', async () => {
  const { Readable } = await import('node:stream');
  const { request } = await import('undici');
  const { signFingerprint } = await import('../../../spiffe/fingerprint.ts');
  const fp = await signFingerprint(front().privateKey, { caller: FRONTEND, target: CARD, method: 'POST', path: '/upload' });
  const res = await request(`${sidecar.url}/upload`, {
    method: 'POST',
    headers: { [FINGERPRINT_HEADER]: fp },
    body: Readable.from((function* () { for (let i = 0; i < 10; i++) yield Buffer.alloc(500, 'y'); })()),
    dispatcher: agentFor(front()),
  });
  await res.body.text();
  assert.is(res.statusCode, 413);
});

inbound('application slow → 504, application down → 503', async () => {
  echo.behave = () => {}; // never answers
  const slow = await call(sidecar.url, frontendAgent, front(), { path: '/slow' });
  echo.behave = undefined;
  assert.is(slow.status, 504);
  const down = await startInbound({
    app: 'http://127.0.0.1:1', identity: ids.card, logger: log.logger,
    filters: await FilterSlot.create(await compiled('card'), loadStrict),
  });
  try {
    const res = await call(down.url, agentFor(front()), front());
    assert.is(res.status, 503);
    assert.is(res.json().error, 'upstream_unavailable');
  } finally {
    await down.close();
  }
});

inbound('slowloris and malformed HTTP: connection dropped, sidecar keeps serving', async () => {
  const open = (svid: ReturnType<SvidHolder['svid']>) =>
    new Promise<import('node:tls').TLSSocket>((resolve, reject) => {
      const s = tlsConnect({ port: sidecar.port, host: '127.0.0.1', ca: ids.ca.certPem, cert: svid.chainPem, key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }), checkServerIdentity: () => undefined }, () => resolve(s));
      s.on('error', reject);
    });
  const slow = await open(front());
  slow.write('GET /cards HTTP/1.1\r\nhost: card\r\n');
  const started = Date.now();
  const answer = await new Promise<string>((resolve) => {
    let data = '';
    slow.on('data', (d) => (data += d));
    slow.on('close', () => resolve(data));
  });
  assert.ok(Date.now() - started < 3000, 'closed by headersTimeout');
  assert.match(answer, /408|^$/);
  const bad = await open(front());
  bad.write('GARBAGE\r\n\r\n');
  const reply = await new Promise<string>((resolve) => {
    let data = '';
    bad.on('data', (d) => (data += d));
    bad.on('close', () => resolve(data));
  });
  assert.match(reply, /^HTTP\/1.1 400/);
  assert.is((await call(sidecar.url, frontendAgent, front())).status, 200);
});

inbound('dry-run: a denied request is forwarded and the would-be decision logged', async () => {
  const dry = await startInbound({
    app: echo.url, identity: ids.card, logger: log.logger,
    filters: await FilterSlot.create(await compiled('card'), (wasm) => loadFilter(wasm, { configuration: '{"mode":"dry-run"}' })),
  });
  try {
    const res = await call(dry.url, agentFor(front()), front(), { method: 'DELETE' });
    assert.is(res.status, 200);
    await sleep(10);
    assert.is(lastLog().decision, 'deny');
    assert.is(lastLog().mode, 'dry-run');
    assert.is(lastLog().status, 200);
  } finally {
    await dry.close();
  }
});

inbound('a rotated SVID serves new connections; existing ones continue', async () => {
  const serialOf = (svid: ReturnType<SvidHolder['svid']>) =>
    new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ port: sidecar.port, host: '127.0.0.1', ca: ids.ca.certPem, cert: svid.chainPem, key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }), checkServerIdentity: () => undefined }, () => {
        resolve(s.getPeerCertificate().serialNumber);
        s.end();
      });
      s.on('error', reject);
    });
  const before = await serialOf(front());
  const kept = agentFor(front());
  assert.is((await call(sidecar.url, kept, front())).status, 200);
  ids.card.rotate(await ids.ca.issue(CARD));
  const after = await serialOf(front());
  assert.is.not(after, before);
  assert.is((await call(sidecar.url, kept, front())).status, 200); // the open connection still works
});

inbound.run();
