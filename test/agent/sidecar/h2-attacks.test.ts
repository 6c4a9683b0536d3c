/**
 * The HTTP/1.1 attacks on the inbound side, over HTTP/2: `:path` tricks, pseudo-header
 * smuggling, oversized header lists and rapid reset. Each request carries a valid fingerprint
 * for exactly what it sends, so what stops it is the listener or the policy, not a missing
 * signature; the application must never see what the policy did not decide, and the sidecar
 * must keep serving.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { startInbound, type Listener } from '../../../agent/sidecar/inbound.ts';
import { FilterSlot } from '../../../agent/sidecar/filter-slot.ts';
import { FINGERPRINT_HEADER, signFingerprint } from '../../../spiffe/fingerprint.ts';
import { identities, startEcho, captureLog, CARD, type Echo } from './harness.ts';
import { compiled, loadStrict } from './policies.ts';
import { rawH2, FRAME, smuggled, assertEachReset, assertRapidResetCut } from './h2-raw.ts';

const attacks = suite('HTTP/2 attacks on the inbound side');
const ids = await identities();
const log = captureLog();
let echo: Echo;
let sidecar: Listener;
const sessions: ClientHttp2Session[] = [];

attacks.before(async () => {
  echo = await startEcho();
  const filters = await FilterSlot.create(await compiled('card'), loadStrict);
  sidecar = await startInbound({ app: echo.url, identity: ids.card, filters, logger: log.logger, limits: { maxPrematureResets: 50 } });
});
attacks.after(async () => {
  for (const s of sessions) s.destroy();
  await sidecar.close();
  await echo.close();
});

function h2Session(): Promise<ClientHttp2Session> {
  const svid = ids.frontend.svid();
  const session = connect(sidecar.url, {
    ca: ids.ca.certPem, cert: svid.chainPem, key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }), checkServerIdentity: () => undefined,
  });
  sessions.push(session);
  session.on('error', () => {});
  return new Promise((resolve, reject) => {
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

/** The fingerprint for exactly this method and path, as the frontend. */
async function fingerprint(method: string, path: string): Promise<string> {
  const svid = ids.frontend.svid();
  return signFingerprint(svid.privateKey, { caller: svid.spiffeId, target: CARD, method, path });
}

/** One request on `session`; resolves with its status, or the reset code when the server reset the stream. */
function send(session: ClientHttp2Session, headers: OutgoingHttpHeaders): Promise<{ status?: number; reset?: number; body: string }> {
  return new Promise((resolve) => {
    const stream = session.request(headers, { endStream: true });
    let status: number | undefined;
    let body = '';
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('data', (c) => (body += c));
    stream.on('error', () => {});
    stream.on('close', () => resolve(status === undefined ? { reset: stream.rstCode, body } : { status, body }));
  });
}

async function get(session: ClientHttp2Session, path: string, extra: OutgoingHttpHeaders = {}) {
  return send(session, { ':method': 'GET', ':path': path, ':authority': 'card', [FINGERPRINT_HEADER]: await fingerprint('GET', path), ...extra });
}

attacks('an allowed request over HTTP/2 reaches the application, which is spoken to over HTTP/1.1', async () => {
  const session = await h2Session();
  assert.is(session.alpnProtocol, 'h2');
  const res = await get(session, '/cards/42');
  assert.is(res.status, 200);
  assert.is(echo.seen.at(-1)!.url, '/cards/42');
  assert.is(echo.seen.at(-1)!.headers.host, 'card');
  assert.is(log.lines.at(-1)!.rule, 'read-card');
});

attacks(':path tricks are decided on the normalized path, and only that path reaches the application', async () => {
  const session = await h2Session();
  const seen = echo.seen.length;
  for (const path of ['/cards/42/../../admin', '/cards/%2e%2e/admin', '/cards/%2E%2E/%2e%2e/admin', '/cards/42%2fsecret', '/cards/42%5C..%5Cadmin', '/admin#/cards/42']) {
    const res = await get(session, path);
    assert.ok(res.status === 403 || res.status === 400, `${path}: ${JSON.stringify(res)}`);
  }
  assert.is(echo.seen.length, seen, 'nothing reached the application');
  const merged = await get(session, '//cards//42');
  assert.is(merged.status, 200);
  assert.is(echo.seen.at(-1)!.url, '/cards/42', 'the application gets the path the policy decided on');
  // Absolute form is not an HTTP/2 :path: refused before any decision.
  const absolute = await get(session, 'https://card/cards/42');
  assert.ok(absolute.reset !== undefined || absolute.status === 400, JSON.stringify(absolute));
  assert.is(echo.seen.length, seen + 1);
});

attacks(':authority and a host header naming another service: 400, not decided, not forwarded', async () => {
  const session = await h2Session();
  const seen = echo.seen.length;
  const res = await get(session, '/cards/42', { host: 'ledger' });
  assert.is(res.status, 400);
  assert.is(log.lines.at(-1)!.reason, 'http2 :authority and host disagree');
  assert.is(echo.seen.length, seen);
  const same = await get(session, '/cards/42', { host: 'card' });
  assert.is(same.status, 200);
});

attacks('pseudo-header smuggling, uppercase names and connection-specific headers: the stream is reset, nothing is forwarded', async () => {
  const seen = echo.seen.length;
  const raw = await rawH2(sidecar.port, ids.ca.certPem, ids.frontend.svid());
  const base = async (path: string): Promise<[string, string][]> => [
    [':method', 'GET'], [':scheme', 'https'], [':authority', 'card'], [':path', path], [FINGERPRINT_HEADER, await fingerprint('GET', path)],
  ];
  await assertEachReset(raw, smuggled(await base('/cards/42')));
  raw.close();
  assert.is(echo.seen.length, seen);
  assert.is((await get(await h2Session(), '/cards/42')).status, 200, 'the sidecar keeps serving');
});

attacks('a header list over the limit is refused before the pipeline; the connection and the sidecar go on', async () => {
  const seen = echo.seen.length;
  const raw = await rawH2(sidecar.port, ids.ca.certPem, ids.frontend.svid());
  raw.send(1, [[':method', 'GET'], [':scheme', 'https'], [':authority', 'card'], [':path', '/cards/42'], ['x-big', 'a'.repeat(40_000)]]);
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && !raw.frames.some((f) => f.stream === 1 || f.type === FRAME.GOAWAY)) await new Promise((r) => setTimeout(r, 20));
  const answer = raw.frames.filter((f) => f.stream === 1 || f.type === FRAME.GOAWAY);
  assert.ok(answer.length > 0, 'the server answered');
  raw.close();
  assert.is(echo.seen.length, seen);
  assert.is((await get(await h2Session(), '/cards/42')).status, 200);
});

attacks('rapid reset: a connection that opens and cancels streams by the thousand is sent GOAWAY; others are served', async () => {
  const seen = echo.seen.length;
  const raw = await rawH2(sidecar.port, ids.ca.certPem, ids.frontend.svid());
  const path = '/cards/42';
  const headers: [string, string][] = [[':method', 'GET'], [':scheme', 'https'], [':authority', 'card'], [':path', path]];
  await assertRapidResetCut(raw, headers);
  raw.close();
  assert.is(echo.seen.length, seen, 'no cancelled stream reached the application');
  assert.ok(log.lines.some((l) => l.msg === 'inbound: HTTP/2 connection closed for resetting its streams'));
  const fresh = await h2Session();
  const answers = await Promise.all(Array.from({ length: 10 }, () => get(fresh, path)));
  assert.equal(answers.map((a) => a.status), Array(10).fill(200));
});

attacks.run();
