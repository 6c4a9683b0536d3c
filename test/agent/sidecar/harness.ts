/**
 * A small perimeter on loopback for the sidecar tests: a test CA, a frontend with an
 * outbound sidecar, a card service behind an inbound sidecar, an echo application, a
 * decision log captured in memory, and mTLS clients for calling the inbound side directly.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import { createCa, type TestCa } from './pki.ts';
import { SvidHolder, type Svid } from '../../../agent/sidecar/svid.ts';
import { createLogger } from '../../../agent/sidecar/decision-log.ts';
import { FINGERPRINT_HEADER, signFingerprint } from '../../../spiffe/fingerprint.ts';

export const TD = 'bank.example';
export const FRONTEND = `spiffe://${TD}/ns/web/sa/frontend`;
export const CARD = `spiffe://${TD}/ns/payments/sa/card`;
export const LEDGER = `spiffe://${TD}/ns/payments/sa/ledger`;

export interface Echo {
  url: string;
  /** Requests the application received. */
  seen: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[];
  /** Replaces the default JSON echo for the next requests. */
  behave?: (req: IncomingMessage, res: import('node:http').ServerResponse) => void;
  close(): Promise<void>;
}

export async function startEcho(): Promise<Echo> {
  const echo: Echo = { url: '', seen: [], close: async () => {} };
  const server: Server = createServer((req, res) => {
    if (echo.behave) return echo.behave(req, res);
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      echo.seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bytes: body.length }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  echo.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  echo.close = () => new Promise((r) => {
    server.closeAllConnections();
    server.close(() => r());
  });
  return echo;
}

/** A pino logger whose lines land in `lines` as parsed JSON. */
export function captureLog(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: createLogger(sink), lines };
}

export async function identities(): Promise<{ ca: TestCa; frontend: SvidHolder; card: SvidHolder }> {
  const ca = await createCa(TD);
  return {
    ca,
    frontend: new SvidHolder(await ca.issue(FRONTEND), ca.certPem),
    card: new SvidHolder(await ca.issue(CARD), ca.certPem),
  };
}

/** An mTLS client (or none: `svid` null) for calling an inbound sidecar directly. */
export function mtlsAgent(caPem: string, svid: Svid | null): Agent {
  return new Agent({
    connect: {
      ca: caPem,
      cert: svid?.chainPem,
      key: svid?.privateKey.export({ format: 'pem', type: 'pkcs8' }),
      minVersion: 'TLSv1.3',
      checkServerIdentity: () => undefined, // these tests aim at the server's checks, not the client's
    },
  });
}

export interface Call {
  method?: Dispatcher.HttpMethod;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Sign a fingerprint as `caller` for `target` (defaults: the SVID's ID and CARD); false: none. */
  fingerprint?: false | { target?: string; method?: string; path?: string; token?: string };
}

export async function call(base: string, agent: Agent, svid: Svid | null, c: Call = {}) {
  const method = c.method ?? 'GET';
  const path = c.path ?? '/cards/42';
  const headers: Record<string, string> = { ...c.headers };
  if (c.fingerprint !== false && svid) {
    const fp = c.fingerprint ?? {};
    const bearer = headers.authorization?.startsWith('Bearer ') ? headers.authorization.slice(7) : undefined;
    headers[FINGERPRINT_HEADER] = await signFingerprint(svid.privateKey, {
      caller: svid.spiffeId, target: fp.target ?? CARD, method: fp.method ?? method, path: fp.path ?? path, identityToken: fp.token ?? bearer,
    });
  }
  const res = await request(base + path, { method, headers, body: c.body, dispatcher: agent });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) };
}
