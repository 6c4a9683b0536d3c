/**
 * Listeners that act as the workload stay private, and TLS listeners (the sidecar's inbound,
 * the CA) close connections that never finish a handshake and cap how many are open, so a
 * slow or silent client cannot hold file descriptors until the process runs out.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { startInbound, type InboundLimits, type Listener } from '../../../agent/sidecar/inbound.ts';
import { startOutbound } from '../../../agent/sidecar/outbound.ts';
import { FilterSlot } from '../../../agent/sidecar/filter-slot.ts';
import { startCaServer } from '../../../ca/server.ts';
import { initCa, removeDir } from '../../support/identity.ts';
import { identities, startEcho, captureLog, mtlsAgent, call, CARD, type Echo } from './harness.ts';
import { compiled, loadStrict } from './policies.ts';

const listeners = suite('listeners');
const ids = await identities();
const log = captureLog();
let echo: Echo;
const open: Listener[] = [];

listeners.before(async () => {
  echo = await startEcho();
});
listeners.after(async () => {
  for (const l of open) await l.close();
  await echo.close();
});

async function inbound(limits: Partial<InboundLimits>): Promise<Listener> {
  const filters = await FilterSlot.create(await compiled('card'), loadStrict);
  const listener = await startInbound({ app: echo.url, identity: ids.card, filters, logger: log.logger, limits });
  open.push(listener);
  return listener;
}

/** A raw TCP connection; `closed` settles when the server hangs up (or rejects after `deadlineMs`, as a failure). */
async function rawConnection(port: number, deadlineMs = 10_000): Promise<{ socket: Socket; closed: Promise<void>; isOpen(): boolean }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  let open = true;
  const closed = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server never closed the connection')), deadlineMs);
    socket.once('close', () => {
      open = false;
      clearTimeout(timer);
      resolve();
    });
  });
  closed.catch(() => socket.destroy());
  return { socket, closed, isOpen: () => open };
}

// The first bytes of a TLS 1.2+ ClientHello record announcing 512 bytes that never come.
const HALF_CLIENT_HELLO = Buffer.from('160301020001000200fc0303', 'hex');

listeners('inbound: a connection that sends nothing, or half a ClientHello, is closed', async () => {
  const { port } = await inbound({ handshakeTimeoutMs: 300 });
  const silent = await rawConnection(port);
  const half = await rawConnection(port);
  half.socket.write(HALF_CLIENT_HELLO);
  await Promise.all([silent.closed, half.closed]);
  assert.not.ok(silent.isOpen() || half.isOpen());
});

listeners('inbound: connections beyond the cap are closed at once; callers get through once they are gone', async () => {
  const listener = await inbound({ maxConnections: 2, handshakeTimeoutMs: 60_000 });
  const held = [await rawConnection(listener.port), await rawConnection(listener.port)];
  const extra = await rawConnection(listener.port);
  await extra.closed;
  assert.ok(held.every((c) => c.isOpen()), 'the held connections are still open');
  for (const c of held) c.socket.destroy();
  await Promise.all(held.map((c) => c.closed));
  const dispatcher = mtlsAgent(ids.ca.certPem, ids.frontend.svid());
  try {
    const ok = await call(listener.url, dispatcher, ids.frontend.svid(), { path: '/cards/1', fingerprint: { target: CARD } });
    assert.is(ok.status, 200);
  } finally {
    await dispatcher.close();
  }
});

listeners('CA: a connection that never completes its handshake is closed; the cap holds too', async () => {
  const caDir = await initCa();
  const ca = await startCaServer({ dir: caDir, port: 0, handshakeTimeoutMs: 300, maxConnections: 2 });
  try {
    const silent = await rawConnection(ca.port);
    const half = await rawConnection(ca.port);
    half.socket.write(HALF_CLIENT_HELLO);
    const extra = await rawConnection(ca.port);
    await Promise.all([silent.closed, half.closed, extra.closed]);
    assert.not.ok(silent.isOpen() || half.isOpen() || extra.isOpen());
  } finally {
    await ca.close();
    removeDir(path.dirname(caDir));
  }
});

listeners('outbound: signs as the workload, so it refuses a non-loopback address without allowRemote', async () => {
  const routes = { card: { url: 'https://127.0.0.1:1', spiffeId: CARD } };
  const refused = await startOutbound({ host: '0.0.0.0', port: 0, routes, identity: ids.frontend, logger: log.logger }).then(() => null, (err: Error) => err.message);
  assert.match(refused ?? 'started', /loopback only, not 0\.0\.0\.0/);
});

listeners.run();
