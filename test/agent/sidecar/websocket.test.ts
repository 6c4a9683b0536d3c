/**
 * WebSocket and HTTP/1.0 through the sidecar: the upgrade request is decided by the policy
 * like any request (and refused like one), an allowed one is piped both ways between a `ws`
 * client behind the outbound side and a `ws` echo server behind the inbound side; an
 * HTTP/1.0 request is served.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { startInbound, type Listener } from '../../../agent/sidecar/inbound.ts';
import { startOutbound } from '../../../agent/sidecar/outbound.ts';
import { FilterSlot } from '../../../agent/sidecar/filter-slot.ts';
import { FINGERPRINT_HEADER, signFingerprint } from '../../../spiffe/fingerprint.ts';
import { identities, captureLog, startEcho, CARD, type Echo } from './harness.ts';
import { compiled, loadStrict } from './policies.ts';

const ws = suite('WebSocket and HTTP/1.0 through the sidecar');
const ids = await identities();
const log = captureLog();
let app: Server;
let echoes: WebSocketServer;
let inbound: Listener;
let outbound: Listener;
let echo: Echo;
let plain: Listener;
const upgradedPaths: string[] = [];

ws.before(async () => {
  app = createServer((_req, res) => res.end('not a websocket'));
  echoes = new WebSocketServer({ server: app });
  echoes.on('connection', (socket, req) => {
    upgradedPaths.push(req.url!);
    socket.on('message', (data, binary) => socket.send(binary ? data : `echo ${data}`));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const filters = await FilterSlot.create(await compiled('card'), loadStrict);
  inbound = await startInbound({ app: `http://127.0.0.1:${(app.address() as AddressInfo).port}`, identity: ids.card, filters, logger: log.logger });
  outbound = await startOutbound({ routes: { card: { url: inbound.url, spiffeId: CARD } }, identity: ids.frontend, logger: log.logger });
  echo = await startEcho();
  plain = await startInbound({ app: echo.url, identity: ids.card, filters: await FilterSlot.create(await compiled('card'), loadStrict), logger: log.logger });
});

ws.after(async () => {
  await outbound.close();
  await inbound.close();
  await plain.close();
  await echo.close();
  echoes.close();
  app.closeAllConnections();
  await new Promise((r) => app.close(r));
});

function open(path: string): Promise<WebSocket> {
  const socket = new WebSocket(`ws://127.0.0.1:${outbound.port}${path}`, { headers: { host: 'card' } });
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(socket));
    socket.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`status ${res.statusCode}`), { status: res.statusCode })));
    socket.once('error', reject);
  });
}

/** The decision line for `path`, written when the connection is over. */
async function logged(path: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 5_000;
  while (!log.lines.some((l) => l.path === path) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return log.lines.find((l) => l.path === path) ?? {};
}

ws('an allowed upgrade is piped both ways: text and binary frames echo back, the decision is logged', async () => {
  const socket = await open('/cards/live');
  const replies: string[] = [];
  const got = new Promise<void>((resolve) =>
    socket.on('message', (data, binary) => {
      replies.push(binary ? `binary ${(data as Buffer).length}` : String(data));
      if (replies.length === 3) resolve();
    }),
  );
  socket.send('hello');
  socket.send(Buffer.alloc(200_000, 7));
  socket.send('bye');
  await got;
  assert.equal(replies, ['echo hello', 'binary 200000', 'echo bye']);
  assert.equal(upgradedPaths, ['/cards/live']);
  const closed = new Promise((r) => socket.once('close', r));
  socket.close();
  await closed;
  const line = await logged('/cards/live');
  assert.is(line.decision, 'allow');
  assert.is(line.rule, 'read-card');
  assert.is(line.status, 101);
});

ws('an upgrade the policy denies is refused with 403 and never reaches the application', async () => {
  const err = await open('/admin/live').then(() => null, (e) => e);
  assert.is(err?.status, 403);
  assert.not.ok(upgradedPaths.includes('/admin/live'));
  assert.is((await logged('/admin/live')).decision, 'deny');
});

ws('an HTTP/1.0 request is served (one request, then the connection closes)', async () => {
  const svid = ids.frontend.svid();
  const fp = await signFingerprint(svid.privateKey, { caller: svid.spiffeId, target: CARD, method: 'GET', path: '/cards/10' });
  const socket = connect({
    host: '127.0.0.1', port: plain.port, ca: ids.ca.certPem, cert: svid.chainPem, key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
    ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined,
  });
  let answer = '';
  socket.on('data', (c) => (answer += c));
  await new Promise((r) => socket.once('secureConnect', r));
  socket.write(`GET /cards/10 HTTP/1.0\r\nHost: card\r\n${FINGERPRINT_HEADER}: ${fp}\r\n\r\n`);
  await new Promise((r) => socket.once('close', r));
  assert.match(answer, /^HTTP\/1\.1 200 /);
  assert.match(answer, /"url":"\/cards\/10"/);
  assert.is(echo.seen.at(-1)!.url, '/cards/10');
});

ws.run();
