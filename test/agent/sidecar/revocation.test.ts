/**
 * Revocation reaches the embedded sidecar: a real CA, a real agent and its sidecar with the
 * compiled card policy, and a caller whose SVID is revoked (or expires) while it holds a
 * connection open or a TLS session ticket. Expiry and staleness are reached by moving the
 * sidecar's clock (`now`), not by waiting for them.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createPrivateKey } from 'node:crypto';
import { request, Agent as HttpsAgent, type RequestOptions } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { mkdtemp, readFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority, type IssuedSvid } from '../../../ca/ca.ts';
import { startCaServer, type CaServer } from '../../../ca/server.ts';
import { startAgent, type IdentityAgent } from '../../../agent/identity/agent.ts';
import { fetchLiveKeyIds } from '../../../agent/identity/client.ts';
import { LiveKeys } from '../../../agent/identity/live-keys.ts';
import { jwkThumbprint, type EcJwk } from '../../../spiffe/pki.ts';
import { startSidecar, type Sidecar } from '../../../agent/sidecar/index.ts';
import { FINGERPRINT_HEADER, signFingerprint } from '../../../spiffe/fingerprint.ts';
import type { Svid } from '../../../agent/sidecar/svid.ts';
import { compiled } from './policies.ts';
import { startEcho, captureLog, CARD, FRONTEND, TD, type Echo } from './harness.ts';
import { eventually } from '../../support/identity.ts';

const test = suite('revocation reaches the sidecar');
const log = captureLog();
let dir: string;
let ca: CaServer;
let bundle: string;
let echo: Echo;
let card: IdentityAgent;
let sidecar: Sidecar;
let port: number;
let caClosed = false;
/** The sidecar's staleness bound: shorter than a caller's SVID lives, so moving the clock past it leaves the SVID valid. */
const MAX_STALE_MS = 5_000;
/** How far the sidecar's clock runs ahead of the real one. */
let ahead = 0;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'palisade-revocation-'));
  await CertificateAuthority.init(join(dir, 'ca'), TD);
  ca = await startCaServer({ dir: join(dir, 'ca'), port: 0 });
  bundle = await readFile(join(dir, 'ca', 'bundle.pem'), 'utf8');
  echo = await startEcho();
  await writeFile(join(dir, 'card.wasm'), await compiled('card'));
  card = await startAgent({ caUrl: ca.url, bundlePem: bundle, token: (await ca.ca.createToken(CARD, 60_000)).token });
  sidecar = await startSidecar({
    identity: card,
    inbound: { host: '127.0.0.1', port: 0, app: echo.url, filterFile: join(dir, 'card.wasm'), watch: false },
    revocation: { refreshMs: 250, maxStaleMs: MAX_STALE_MS }, // a shorter refresh than the default: a revocation arrives sooner
    now: () => Date.now() + ahead,
    logger: log.logger,
  });
  port = sidecar.inbound!.port;
});

test.after(async () => {
  await sidecar.close();
  card.close();
  if (!caClosed) await ca.close();
  await echo.close();
  await rm(dir, { recursive: true, force: true });
});

/** A frontend SVID minted by the CA, as a thief would hold it (certificate and key). */
async function frontendSvid(ttlMs = 60_000): Promise<Svid & { serial: string }> {
  const issued: IssuedSvid & { key_pem: string } = await ca.ca.mint(FRONTEND, ttlMs);
  return { spiffeId: FRONTEND, serial: issued.serial, chainPem: issued.svid_pem, privateKey: createPrivateKey(issued.key_pem), notAfter: new Date(issued.not_after) };
}

interface Answer {
  status: number;
  socket: TLSSocket;
  /** The TLS session ticket the sidecar sent on this connection (one-shot connections only). */
  session?: Promise<Buffer>;
}

/** GET /cards/42 (allowed for the frontend by the card policy) with a fresh fingerprint. */
async function get(svid: Svid, options: RequestOptions & { session?: Buffer } = {}): Promise<Answer> {
  const headers = { [FINGERPRINT_HEADER]: await signFingerprint(svid.privateKey, { caller: svid.spiffeId, target: CARD, method: 'GET', path: '/cards/42' }) };
  return new Promise((resolve, reject) => {
    let session: Promise<Buffer> | undefined;
    const req = request(
      {
        host: '127.0.0.1', port, path: '/cards/42', headers, agent: false,
        ca: bundle, cert: svid.chainPem, key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }), minVersion: 'TLSv1.3',
        checkServerIdentity: () => undefined, // the server's identity is not what this test is about
        ...options,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, socket: res.socket as TLSSocket, session }));
      },
    );
    if (!options.agent) req.on('socket', (socket) => (session = new Promise((r) => socket.once('session', r))));
    req.on('error', reject);
    req.end();
  });
}

const lastReason = () => log.lines.at(-1)!.reason as string;

test('a revoked SVID is refused (401) on new connections once the refresh has run', async () => {
  const stolen = await frontendSvid();
  assert.is((await get(stolen)).status, 200);
  await ca.ca.revoke(stolen.serial);
  await eventually(async () => (await get(stolen)).status === 401);
  assert.match(lastReason(), /revoked/);
});

test('a revoked SVID is refused on a connection opened before the revocation', async () => {
  const stolen = await frontendSvid();
  const keepAlive = new HttpsAgent({ keepAlive: true, maxSockets: 1 });
  try {
    const first = await get(stolen, { agent: keepAlive });
    assert.is(first.status, 200);
    await ca.ca.revoke(stolen.serial);
    const sockets = new Set([first.socket]);
    await eventually(async () => {
      const next = await get(stolen, { agent: keepAlive });
      sockets.add(next.socket);
      return next.status === 401;
    });
    assert.is(sockets.size, 1, 'every request went over the one connection opened before the revocation');
    assert.match(lastReason(), /revoked/);
  } finally {
    keepAlive.destroy();
  }
});

test('a revoked SVID is refused on a resumed TLS session', async () => {
  const stolen = await frontendSvid();
  const first = await get(stolen);
  assert.is(first.status, 200);
  const ticket = await first.session!;
  const resumed = await get(stolen, { session: ticket });
  assert.ok(resumed.socket.isSessionReused(), 'the session ticket resumes the session');
  assert.is(resumed.status, 200);
  await ca.ca.revoke(stolen.serial);
  await eventually(async () => {
    const again = await get(stolen, { session: ticket });
    assert.ok(again.socket.isSessionReused());
    return again.status === 401;
  });
  assert.match(lastReason(), /revoked/);
});

test('an expired certificate is refused through TLS session resumption', async () => {
  const shortLived = await frontendSvid();
  const first = await get(shortLived);
  assert.is(first.status, 200);
  const ticket = await first.session!;
  ahead = shortLived.notAfter.getTime() - Date.now() + 1_000;
  try {
    const resumed = await get(shortLived, { session: ticket });
    assert.ok(resumed.socket.isSessionReused(), 'the handshake was skipped, so TLS never saw the expiry');
    assert.is(resumed.status, 401);
    assert.match(lastReason(), /expired/);
  } finally {
    ahead = 0;
  }
});

test('a caller that renewed after the last refresh is accepted at once (the miss re-fetches)', async () => {
  const keys = await LiveKeys.start(() => fetchLiveKeyIds(ca.url, bundle), { refreshMs: 3_600_000 });
  try {
    const renewed = await frontendSvid();
    const kid = jwkThumbprint(renewed.privateKey.export({ format: 'jwk' }) as EcJwk);
    assert.is(await keys.standing(kid), 'live');
    await ca.ca.revoke(renewed.serial);
    await keys.refresh();
    assert.is(await keys.standing(kid), 'unknown');
  } finally {
    keys.close();
  }
});

test('CA unreachable beyond the staleness bound: every caller is refused (503), none let through', async () => {
  const caller = await frontendSvid();
  assert.is((await get(caller)).status, 200);
  await ca.close();
  caClosed = true;
  ahead = MAX_STALE_MS + 1_000;
  await eventually(async () => (await get(caller)).status === 503);
  assert.match(lastReason(), /stale/);
});

test.run();
