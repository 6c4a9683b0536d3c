/**
 * Revocation reaches the outbound side: a thief holding card's stolen SVID (certificate and
 * key) runs a server with it, and the frontend's outbound sidecar is routed to it (a hijacked
 * address). Once the CA revokes that SVID, the frontend stops talking to the server: open
 * connections are cut at the next sweep and new ones refused, over HTTP/1.1 and HTTP/2 alike.
 * Expiry is reached by moving the sidecar's clock.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { CertificateAuthority } from '../../../ca/ca.ts';
import { startCaServer, type CaServer } from '../../../ca/server.ts';
import { startAgent, type IdentityAgent } from '../../../agent/identity/agent.ts';
import { startSidecar, type Sidecar } from '../../../agent/sidecar/index.ts';
import { captureLog, CARD, FRONTEND, TD } from './harness.ts';
import { eventually } from '../../support/identity.ts';

const test = suite('revocation reaches the outbound side');
const log = captureLog();
let dir: string;
let ca: CaServer;
let bundle: string;
let frontend: IdentityAgent;
/** How far the sidecars' clock runs ahead of the real one. */
let ahead = 0;
const closers: (() => Promise<unknown> | void)[] = [];

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'palisade-outbound-revocation-'));
  await CertificateAuthority.init(join(dir, 'ca'), TD);
  ca = await startCaServer({ dir: join(dir, 'ca'), port: 0 });
  bundle = await readFile(join(dir, 'ca', 'bundle.pem'), 'utf8');
  frontend = await startAgent({ caUrl: ca.url, bundlePem: bundle, token: (await ca.ca.createToken(FRONTEND, 60_000)).token });
});

test.after.each(async () => {
  ahead = 0;
  for (const close of closers.splice(0).reverse()) await close();
});

test.after(async () => {
  frontend.close();
  await ca.close();
  await rm(dir, { recursive: true, force: true });
});

/** A server presenting a card SVID the CA minted (as a thief holds it), answering 200 "thief" over `protocol`. */
async function thief(protocol: 'h2' | 'http/1.1'): Promise<{ url: string; serial: string }> {
  const issued = await ca.ca.mint(CARD, 60_000);
  const tls = { cert: issued.svid_pem, key: issued.key_pem, ca: bundle, requestCert: true, rejectUnauthorized: false };
  const answer = (_req: unknown, res: { end(body: string): void }) => res.end('thief');
  const server = protocol === 'h2' ? createSecureServer({ ...tls, allowHTTP1: false }, answer) : createHttpsServer(tls, answer);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => {
    (server as { closeAllConnections?: () => void }).closeAllConnections?.();
    server.close(resolve);
  }));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, serial: issued.serial };
}

/** The frontend's outbound sidecar, with card routed to `url`. */
async function outbound(url: string): Promise<Sidecar> {
  const sidecar = await startSidecar({
    identity: frontend,
    outbound: { host: '127.0.0.1', port: 0, routes: { card: { url, spiffeId: CARD } } },
    revocation: { refreshMs: 200 },
    now: () => Date.now() + ahead,
    logger: log.logger,
  });
  closers.push(() => sidecar.close());
  return sidecar;
}

async function getCard(sidecar: Sidecar): Promise<{ status: number; body: string }> {
  const res = await request(`${sidecar.outbound!.url}/cards/42`, { headers: { host: 'card' } });
  return { status: res.statusCode, body: await res.body.text() };
}

/**
 * The first answer that no longer reaches the server. A request in flight on the connection
 * a sweep cuts fails as any cut connection does (503 upstream_unavailable): the next one is
 * the refusal.
 */
async function refusedAnswer(sidecar: Sidecar): Promise<{ status: number; body: string }> {
  return (await eventually(async () => {
    const answer = await getCard(sidecar);
    const cut = answer.status === 503 && JSON.parse(answer.body).error?.code === 'upstream_unavailable';
    return answer.status === 200 || cut ? undefined : answer; // still reaching it, or cut mid-request: not yet
  }, 5_000))!;
}

for (const protocol of ['http/1.1', 'h2'] as const) {
  test(`${protocol}: a server whose SVID is revoked is cut off, on its open connection and on new ones`, async () => {
    const server = await thief(protocol);
    const sidecar = await outbound(server.url);
    assert.equal(await getCard(sidecar), { status: 200, body: 'thief' }, 'before the revocation the route works');
    await ca.ca.revoke(server.serial);
    const refused = await refusedAnswer(sidecar);
    assert.is(refused.status, 502);
    const error = JSON.parse(refused.body).error;
    assert.is(error.code, 'upstream_untrusted');
    assert.match(error.message, /server certificate revoked/);
    assert.is((await getCard(sidecar)).status, 502, 'and stays refused');
  });
}

test('a server whose SVID has expired is refused', async () => {
  const server = await thief('http/1.1');
  const sidecar = await outbound(server.url);
  assert.is((await getCard(sidecar)).status, 200);
  ahead = 61_000; // past the server SVID's 60 s (the CA's live keys are then stale too: expiry is judged first)
  const refused = await refusedAnswer(sidecar);
  assert.is(refused.status, 502);
  assert.match(JSON.parse(refused.body).error.message, /server certificate expired/);
});

test.run();
