/**
 * Inbound listener: TLS 1.3 with a required client SVID, negotiating HTTP/2 (`h2`) or
 * HTTP/1.1 by ALPN, in front of one request pipeline (inbound-request.ts) for both. HTTP/1.1
 * connections are parsed by node:http with the same limits as a node:https server;
 * HTTP/2 sessions get their own bounds: concurrent streams, header list size, and a
 * premature-reset budget (rapid reset, CVE-2023-44487) past which the connection is closed
 * with GOAWAY, as Envoy's overload protection does.
 */
import { createSecureServer, constants, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import { Server as HttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { SvidSource } from './svid.ts';
import { tlsMaterial } from './tls.ts';
import { trustDomainOf } from './peer.ts';
import { DEFAULT_SKEW_SECONDS, DEFAULT_TTL_SECONDS } from '../../spiffe/fingerprint.ts';
import { ReplayCache } from '../../spiffe/replay-cache.ts';
import type { IdentityVerifier } from './identity-context.ts';
import type { FilterSlot } from './filter-slot.ts';
import { firstHeader, listen, type ServerReply, type ServerRequest } from './http.ts';
import { replyLocally } from './local-reply.ts';
import type { LiveKeys } from '../identity/live-keys.ts';
import type { DecisionAudit } from './audit.ts';
import { requestPipeline, type Malformed, type PipelineOptions } from './inbound-request.ts';
import { appClient, type AppProtocol } from './app-client.ts';
import { handleUpgrade } from './websocket.ts';
import type { Duplex } from 'node:stream';

export interface InboundLimits {
  /** Request line + headers (HTTP/1.1), header list (HTTP/2); larger gets 431 (HTTP/1.1) or a reset stream (HTTP/2). */
  maxHeaderBytes: number;
  maxBodyBytes: number;
  /** Slowloris: the whole header block must arrive within this, the whole request within the next (HTTP/1.1). */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  /** The application must start answering within this (else 504) and keep its body flowing (HTTP/1.1 applications). */
  appHeadersTimeoutMs: number;
  appBodyTimeoutMs: number;
  appConnections: number;
  /** A connection must complete its TLS handshake within this, else it is closed. */
  handshakeTimeoutMs: number;
  /** Open connections at most (handshaking or not); further ones are closed at once. */
  maxConnections: number;
  /** HTTP/2: streams open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams: number;
  /** HTTP/2: streams the client may reset before they were answered, once they are half its streams or more; then GOAWAY. */
  maxPrematureResets: number;
  /** HTTP/2: a connection with no frame for this long is closed (GOAWAY; open streams finish). */
  h2IdleTimeoutMs: number;
}

export const DEFAULT_INBOUND_LIMITS: InboundLimits = {
  maxHeaderBytes: 16 * 1024,
  maxBodyBytes: 1024 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  appHeadersTimeoutMs: 15_000,
  appBodyTimeoutMs: 30_000,
  appConnections: 64,
  handshakeTimeoutMs: 10_000,
  maxConnections: 1024,
  maxConcurrentStreams: 128,
  maxPrematureResets: 100,
  h2IdleTimeoutMs: 300_000,
};

export interface InboundOptions {
  host?: string;
  port?: number;
  /** The application's URL (origin), e.g. http://127.0.0.1:8080. */
  app: string;
  /** How the application is spoken to: `http1` (default) or `h2c` (cleartext HTTP/2, for gRPC services). */
  appProtocol?: AppProtocol;
  identity: SvidSource;
  filters: FilterSlot;
  identityContext?: IdentityVerifier;
  /**
   * The CA's live keys: every request's caller must hold one (revocation). Without them (a
   * PKI and no CA, as in some tests) only the trust bundle and validity are checked.
   */
  liveKeys?: LiveKeys;
  replay?: ReplayCache;
  fingerprintTtlSeconds?: number;
  skewSeconds?: number;
  limits?: Partial<InboundLimits>;
  logger: Logger;
  /** One audit entry per decision, written before an allowed request is forwarded. */
  audit?: DecisionAudit;
  onDecision?: PipelineOptions['onDecision'];
}

export interface Listener {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startInbound(opts: InboundOptions): Promise<Listener> {
  const limits = { ...DEFAULT_INBOUND_LIMITS, ...opts.limits };
  const self = opts.identity.svid().spiffeId;
  const app = appClient(opts.app, opts.appProtocol ?? 'http1', limits);
  const handle = requestPipeline({
    self,
    trustDomain: trustDomainOf(self),
    app,
    filters: opts.filters,
    identityContext: opts.identityContext,
    liveKeys: opts.liveKeys,
    replay: opts.replay ?? new ReplayCache(),
    skewSeconds: opts.skewSeconds ?? DEFAULT_SKEW_SECONDS,
    maxTtlSeconds: opts.fingerprintTtlSeconds ?? DEFAULT_TTL_SECONDS,
    maxBodyBytes: limits.maxBodyBytes,
    logger: opts.logger,
    audit: opts.audit,
    onDecision: opts.onDecision,
  });
  const fail = (req: ServerRequest, res: ServerReply) => (err: unknown) => {
    opts.logger.error({ err: (err as Error).message }, 'inbound request failed');
    replyLocally(req, res, 500, { error: 'internal', request_id: firstHeader(req.headers['x-request-id']) ?? null });
  };

  const server: Http2SecureServer = createSecureServer(
    {
      ...tlsMaterial(opts.identity),
      requestCert: true,
      // Checked per request instead, so a caller without a valid SVID gets a 401, not a bare TLS alert.
      rejectUnauthorized: false,
      allowHTTP1: true,
      noDelay: true,
      handshakeTimeout: limits.handshakeTimeoutMs,
      settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes, enablePush: false },
      maxHeaderListPairs: 128,
    },
    (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => {
      const malformed = req.httpVersionMajor === 2 ? malformedH2(req as Http2ServerRequest) : undefined;
      handle(req, res, malformed).catch(fail(req, res));
    },
  );
  // HTTP/1.1 connections are handed to node:http, which reads its settings from this server:
  // give it exactly what a node:https server with these options has.
  Object.assign(server, http1Settings(limits));
  server.on('tlsClientError', () => {}); // a failed handshake is the client's problem; nothing reached us
  server.maxConnections = limits.maxConnections;
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.setTimeout(limits.h2IdleTimeoutMs, () => session.close());
    guardResets(session, limits.maxPrematureResets, opts.logger);
  });
  // WebSocket (HTTP/1.1 Upgrade): decided like any request, then piped both ways.
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => handleUpgrade(req, socket, head, (q, r) => void handle(q, r).catch(fail(q, r))));
  const rotate = () => server.setSecureContext(tlsMaterial(opts.identity));
  opts.identity.on('rotated', rotate);

  const address = await listen(server as unknown as HttpServer, opts.port, opts.host);
  return {
    url: `https://${address.address}:${address.port}`,
    port: address.port,
    async close() {
      opts.identity.off('rotated', rotate);
      await drain(server, sessions);
      await app.close();
    },
  };
}

/** What node:http takes from its server object, as `https.createServer` would set it for these limits. */
function http1Settings(limits: InboundLimits) {
  return {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    // Node checks those timeouts only this often (default 30 s): check often enough to matter.
    connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs / 2),
    keepAliveTimeout: 5_000,
    requireHostHeader: true,
    rejectNonStandardBodyWrites: false,
    httpAllowHalfOpen: false,
    maxHeadersCount: null,
    maxRequestsPerSocket: 0,
  };
}

/**
 * What nghttp2 lets through but a proxy must not: a `host` header naming another authority
 * than `:authority` (RFC 9113 §8.3.1: malformed), which could make the filter and the
 * application see different targets. nghttp2 itself resets streams with duplicate or
 * unknown pseudo-headers, uppercase names and connection-specific headers.
 */
function malformedH2(req: Http2ServerRequest): Malformed | undefined {
  const authority = req.headers[':authority'];
  const host = req.headers.host;
  if (authority !== undefined && host !== undefined && host !== authority) {
    return { status: 400, reason: 'http2 :authority and host disagree' };
  }
  if (authority === undefined && host === undefined) return { status: 400, reason: 'http2 request without :authority' };
  return undefined;
}

/**
 * Rapid reset: a client that opens streams and cancels them at once makes the server start
 * work for each and never waits for it. As Envoy's premature-reset protection counts them: a
 * stream reset (not closed cleanly) within a second of opening; once there are `max` of them
 * and they are at least half the connection's streams, the connection goes (GOAWAY
 * ENHANCE_YOUR_CALM).
 */
function guardResets(session: ServerHttp2Session, max: number, logger: Logger): void {
  let streams = 0;
  let resets = 0;
  session.on('stream', (stream) => {
    streams++;
    const opened = performance.now();
    stream.once('close', () => {
      if (stream.rstCode === constants.NGHTTP2_NO_ERROR || performance.now() - opened >= PREMATURE_RESET_MS) return;
      resets++;
      if (resets >= max && resets * 2 >= streams && !session.closed && !session.destroyed) {
        logger.warn({ streams, resets, peer: session.socket?.remoteAddress }, 'inbound: HTTP/2 connection closed for resetting its streams');
        // GOAWAY first, so the client learns why (streams it opens after it are ignored), then the connection goes.
        session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
        session.close();
        setTimeout(() => session.destroy(), GOAWAY_GRACE_MS).unref();
      }
    });
  });
}

/** Envoy's premature_reset_min_stream_lifetime_seconds default. */
const PREMATURE_RESET_MS = 1_000;
/** How long a connection sent GOAWAY for abuse may take to finish its open streams. */
const GOAWAY_GRACE_MS = 1_000;

/** Stops accepting, lets requests in flight finish for up to 2 s (HTTP/2: GOAWAY first), then cuts what is left. */
async function drain(server: Http2SecureServer, sessions: Set<ServerHttp2Session>): Promise<void> {
  const closed = new Promise((resolve) => server.close(resolve));
  HttpServer.prototype.closeIdleConnections.call(server); // close() did this in Node 20; not typed on HTTP/2 servers
  for (const session of sessions) session.close();
  const timer = setTimeout(() => {
    HttpServer.prototype.closeAllConnections.call(server);
    for (const session of sessions) session.destroy();
  }, 2_000);
  await closed;
  clearTimeout(timer);
}
