/**
 * Many requests over the outbound sidecar's HTTP/2 connection to a peer. A server built on
 * nghttp2 (Node's, so the inbound sidecar and most applications) counts every RST_STREAM it
 * receives as rapid reset, 1,000 at once then 33 a second, and past that drops the whole
 * connection with GOAWAY INTERNAL_ERROR, failing every request on it. A client that resets
 * each stream once it has its answer gets there under steady load (the reload test's
 * "Session closed with error code 2"); one that lets finished streams close by themselves
 * keeps its connection. Between the two sidecars sits a TLS-terminating observer holding
 * test keys: it counts the frames the outbound side sends and passes them on unchanged.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, connect as tlsConnect, type Server as TlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { startSidecar, type Sidecar } from '../../../agent/sidecar/index.ts';
import { identities, startEcho, captureLog, CARD, type Echo } from './harness.ts';
import { compiled } from './policies.ts';
import { frameReader, FRAME, PREFACE } from './h2-raw.ts';
import type { Svid } from '../../../agent/sidecar/svid.ts';

const sustained = suite('sustained HTTP/2 to a peer');
const REQUESTS = 200;
const ids = await identities();
const log = captureLog();
const dir = await mkdtemp(join(tmpdir(), 'palisade-h2-sustained-'));
let echo: Echo;
let cardSidecar: Sidecar;
let frontend: Sidecar;
let observer: TlsServer;
let connections = 0;
/** RST_STREAM frames the outbound side sent its peer. */
let resets = 0;

const pem = (svid: Svid) => ({
  cert: svid.chainPem,
  key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
});

sustained.before(async () => {
  echo = await startEcho();
  const filterFile = join(dir, 'card.wasm');
  await writeFile(filterFile, await compiled('card'));
  cardSidecar = await startSidecar({ identity: ids.card, inbound: { app: echo.url, filterFile, watch: false }, logger: log.logger });
  // The card workload to the outbound side, the frontend to the inbound side: the fingerprints stay valid.
  observer = createTlsServer({ ...pem(ids.card.svid()), ca: ids.ca.certPem, requestCert: true, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3' }, (socket) => {
    connections++;
    socket.setNoDelay(true);
    const upstream = tlsConnect({
      ...pem(ids.frontend.svid()), ca: ids.ca.certPem, host: '127.0.0.1', port: cardSidecar.inbound!.port,
      ALPNProtocols: ['h2'], minVersion: 'TLSv1.3', checkServerIdentity: () => undefined,
    });
    upstream.setNoDelay(true);
    let preface = PREFACE.length;
    const frames = frameReader((frame) => {
      if (frame.type === FRAME.RST_STREAM) resets++;
    });
    socket.on('data', (chunk: Buffer) => {
      const skipped = Math.min(preface, chunk.length);
      preface -= skipped;
      frames(chunk.subarray(skipped));
    });
    socket.pipe(upstream).pipe(socket);
    socket.on('error', () => upstream.destroy());
    upstream.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => observer.listen(0, '127.0.0.1', resolve));
  frontend = await startSidecar({
    identity: ids.frontend,
    outbound: { routes: { card: { url: `https://127.0.0.1:${(observer.address() as AddressInfo).port}`, spiffeId: CARD } } },
    logger: log.logger,
  });
});

sustained.after(async () => {
  await frontend.close();
  observer.close();
  await cardSidecar.close();
  await echo.close();
  await rm(dir, { recursive: true, force: true });
});

sustained('a stream that has its answer is never reset: every request succeeds on one connection', async () => {
  let sent = 0;
  const statuses = new Map<number, number>();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (sent < REQUESTS) {
        sent++;
        const res = await request(`${frontend.outbound!.url}/cards/${sent}`, { headers: { host: 'card' } });
        await res.body.text();
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      }
    }),
  );
  assert.equal([...statuses], [[200, REQUESTS]]);
  assert.equal(log.lines.filter((l) => l.msg === 'outbound request failed'), []);
  assert.is(resets, 0);
  assert.is(connections, 1);
});

sustained.run();
