/**
 * Inbound listener: TLS 1.3 with a required client SVID, then the fingerprint, then the
 * identity context, then the compiled policy filter with exactly what Envoy would give it;
 * allowed requests are streamed to the application. Every step fails closed.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { KeyObject, X509Certificate } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { Transform } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { Pool, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { SvidSource } from './svid.ts';
import { tlsMaterial } from './tls.ts';
import { spiffeIdOf, trustDomainOf } from './peer.ts';
import { continueTrace } from './trace.ts';
import { FINGERPRINT_HEADER, FingerprintError, verifyFingerprint, DEFAULT_SKEW_SECONDS, DEFAULT_TTL_SECONDS, type FingerprintClaims } from '../../spiffe/fingerprint.ts';
import { ReplayCache } from '../../spiffe/replay-cache.ts';
import { IdentityContextError, type IdentityContext, type IdentityVerifier } from './identity-context.ts';
import type { FilterSlot, Lease } from './filter-slot.ts';
import { decisionOf, type Decision } from '../../testing/decision-line.ts';
import type { Outcome, Pair, UpstreamResponse } from '../../host/filter.ts';
import { forwardable, firstHeader, sendJson, upstreamFailure, hasBody, listen, drain, relay } from './http.ts';
import { logDecision, pathForLog, type DecisionRecord } from './decision-log.ts';
import { refusalOf, type PeerCredential } from './standing.ts';
import type { LiveKeys } from '../identity/live-keys.ts';
import { jwkThumbprint, type EcJwk } from '../../spiffe/pki.ts';
import type { DecisionAudit, Evidence } from './audit.ts';
import { FINGERPRINT_REASONS } from './refusal-reasons.ts';

export interface InboundLimits {
  /** Request line + headers; larger gets 431 from node:http. */
  maxHeaderBytes: number;
  maxBodyBytes: number;
  /** Slowloris: the whole header block must arrive within this, the whole request within the next. */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  /** The application must start answering within this (else 504) and keep its body flowing. */
  appHeadersTimeoutMs: number;
  appBodyTimeoutMs: number;
  appConnections: number;
  /** A connection must complete its TLS handshake within this, else it is closed. */
  handshakeTimeoutMs: number;
  /** Open connections at most (handshaking or not); further ones are closed at once. */
  maxConnections: number;
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
};

export interface InboundOptions {
  host?: string;
  port?: number;
  /** The application's URL (origin), e.g. http://127.0.0.1:8080. */
  app: string;
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
}

export interface Listener {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** What a connection's client certificate established; `address` is the peer's ip:port, as Envoy's source.address. */
type Peer = ({ id: string; key: KeyObject; cert: X509Certificate; address: string } & PeerCredential) | { error: string };

/** Envoy's jwt_authn metadata namespace, where the filter reads `user` and `fingerprint`. */
const JWT_AUTHN = 'envoy.filters.http.jwt_authn';

export async function startInbound(opts: InboundOptions): Promise<Listener> {
  const limits = { ...DEFAULT_INBOUND_LIMITS, ...opts.limits };
  const self = opts.identity.svid().spiffeId;
  const trustDomain = trustDomainOf(self);
  const replay = opts.replay ?? new ReplayCache();
  const skewSeconds = opts.skewSeconds ?? DEFAULT_SKEW_SECONDS;
  const maxTtlSeconds = opts.fingerprintTtlSeconds ?? DEFAULT_TTL_SECONDS;
  const peers = new WeakMap<TLSSocket, Peer>();
  const app = new Pool(new URL(opts.app).origin, {
    connections: limits.appConnections,
    headersTimeout: limits.appHeadersTimeoutMs,
    bodyTimeout: limits.appBodyTimeoutMs,
    keepAliveTimeout: 4_000,
  });

  /** The caller's identity is a property of the connection: worked out once per socket. */
  function peerOf(socket: TLSSocket): Peer {
    let peer = peers.get(socket);
    if (!peer) peers.set(socket, (peer = verifyPeer(socket, trustDomain)));
    return peer;
  }

  let inFlight = 0;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const trace = continueTrace(req.headers.traceparent);
    const requestId = firstHeader(req.headers['x-request-id']) ?? randomUUID();
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    // Filled in as the request goes; written once, when the caller's response is over.
    const record: DecisionRecord = {
      trace_id: trace.traceId, request_id: requestId, caller: null, target: self, method, path: pathForLog(path),
      decision: 'error', rule: null, mode: null, status: 0, reason: 'aborted', latency_ms: 0,
    };
    let lease: Lease | undefined;
    const evidence: Evidence = {};
    let audited = false;
    /** The decision's audit entry, once per request; false: not written and the request must stop. */
    const audit = async (status: number) => {
      if (audited) return true;
      audited = true;
      record.status = status;
      return opts.audit ? opts.audit.record(record, evidence) : true;
    };
    inFlight++;
    res.once('close', () => {
      inFlight--;
      lease?.release();
      record.status = res.statusCode;
      record.latency_ms = Math.round((performance.now() - started) * 1000) / 1000;
      logDecision(opts.logger, record);
    });

    /** A refusal by the sidecar itself, before or instead of the filter. */
    const refuse = async (status: number, error: string, reason: string) => {
      record.decision = status === 401 ? 'unauthenticated' : 'error';
      record.reason = reason;
      await audit(status);
      sendJson(res, status, { error, request_id: requestId }, { connection: status === 413 ? 'close' : 'keep-alive' });
    };

    const peer = peerOf(req.socket as TLSSocket);
    if ('error' in peer) return refuse(401, 'unauthenticated', peer.error);
    record.caller = peer.id;
    const refusal = await refusalOf(peer, opts.liveKeys);
    if (refusal) return refuse(refusal.status, refusal.status === 401 ? 'unauthenticated' : 'unavailable', refusal.reason);
    evidence.callerCert = peer.cert;

    const authorization = firstHeader(req.headers.authorization);
    const bearer = authorization?.startsWith('Bearer ') ? authorization.slice(7) : undefined;
    let fingerprint: FingerprintClaims;
    try {
      fingerprint = await verifyFingerprint(
        firstHeader(req.headers[FINGERPRINT_HEADER]),
        peer.key,
        // Alone, the signature is checked right here; with company, off the event loop.
        { self, caller: peer.id, method, path, identityToken: bearer, skewSeconds, maxTtlSeconds, offLoop: inFlight > 1 },
        replay,
      );
    } catch (err) {
      if (!(err instanceof FingerprintError)) throw err;
      return refuse(err.status, err.status === 401 ? 'unauthenticated' : 'unavailable', FINGERPRINT_REASONS[err.reason]);
    }
    evidence.fingerprint = firstHeader(req.headers[FINGERPRINT_HEADER]);

    let user: IdentityContext | undefined;
    if (opts.identityContext) {
      try {
        user = evidence.user = await opts.identityContext(authorization, { caller: peer.id, callerKey: peer.key, method, path });
      } catch (err) {
        if (!(err instanceof IdentityContextError)) throw err;
        return refuse(401, 'unauthenticated', `identity context ${err.reason}`);
      }
    }

    const declared = Number(req.headers['content-length'] ?? 0);
    if (!(declared <= limits.maxBodyBytes)) return refuse(413, 'payload_too_large', `body of ${req.headers['content-length']} bytes`);

    lease = opts.filters.acquire();
    evidence.policySha256 = lease.sha256;
    let auditRefused = false;
    // The filter sees the request headers; the body streams to the application untouched.
    let upstream: Dispatcher.ResponseData | undefined;
    let result: Outcome;
    try {
      result = await lease.filter.handleRequest(
        {
          method,
          path,
          authority: req.headers.host ?? '',
          scheme: 'https',
          headers: filterHeaders(req, requestId, trace.traceparent, self, peer.id),
          source: { principal: peer.id, address: peer.address },
          metadata: { [JWT_AUTHN]: user ? { user: user.claims, fingerprint } : { fingerprint } },
        },
        {
          upstream: async (forwarded) => {
            const decided = decisionOf(forwarded) ?? FORWARDED;
            Object.assign(record, { decision: decided.decision, rule: decided.rule, mode: decided.mode, reason: decided.reason });
            if (!(await audit(decided.status))) {
              auditRefused = true;
              return { status: 503, headers: [['content-type', 'application/json']], body: JSON.stringify({ error: 'unavailable', request_id: requestId }) };
            }
            const answer = await callApp(req, forwarded.headers);
            if ('failure' in answer) return answer.failure;
            upstream = answer.response;
            return { status: upstream.statusCode, headers: responsePairs(upstream.headers) };
          },
        },
      );
    } catch (err) {
      upstream?.body.destroy();
      // fail_open: false — a filter that cannot decide refuses the request.
      return refuse(503, 'unavailable', `filter failed: ${(err as Error).message}`);
    }
    const decision = decisionOf(result) ?? impliedDecision(result);
    record.decision = decision.decision;
    record.rule = decision.rule;
    record.mode = decision.mode;
    record.reason = auditRefused ? 'audit entry not written' : decision.reason;
    await audit(result.kind === 'reset' ? 0 : result.status);

    if (result.kind === 'reset') {
      upstream?.body.destroy();
      res.destroy();
      return;
    }
    res.writeHead(result.status, result.headers);
    if (result.kind === 'forward' && upstream) return relay(upstream.body, res);
    upstream?.body.destroy(); // a reply replaced the application's response
    res.end(result.body);
  }

  /** Sends the request as the filter left it to the application; failures become Envoy-like local answers. */
  async function callApp(req: IncomingMessage, headers: Pair[]): Promise<{ response: Dispatcher.ResponseData } | { failure: UpstreamResponse }> {
    let path = req.url ?? '/';
    let authority = req.headers.host ?? '';
    const flat: string[] = [];
    for (const [name, value] of headers) {
      if (name === ':path') path = value;
      else if (name === ':authority') authority = value;
      else if (!name.startsWith(':')) flat.push(name, value);
    }
    flat.push('host', authority);
    let overflow = false;
    const body = hasBody(req.headers) ? req.pipe(limitBytes(limits.maxBodyBytes, () => (overflow = true))) : null;
    try {
      return { response: await app.request({ method: req.method ?? 'GET', path, headers: flat, body }) };
    } catch (err) {
      const { status, code } = overflow ? { status: 413, code: 'payload_too_large' } : upstreamFailure(err);
      const text = JSON.stringify({ error: code, request_id: req.headers['x-request-id'] ?? null });
      return { failure: { status, headers: [['content-type', 'application/json']], body: text } };
    }
  }

  const server: Server = createServer(
    {
      ...tlsMaterial(opts.identity),
      requestCert: true,
      // Checked per request instead, so a caller without a valid SVID gets a 401, not a bare TLS alert.
      rejectUnauthorized: false,
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // Node checks those timeouts only this often (default 30 s): check often enough to matter.
      connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs / 2),
      keepAliveTimeout: 5_000,
      noDelay: true,
      handshakeTimeout: limits.handshakeTimeoutMs,
    },
    (req, res) => {
      handle(req, res).catch((err) => {
        opts.logger.error({ err: (err as Error).message }, 'inbound request failed');
        sendJson(res, 500, { error: 'internal', request_id: firstHeader(req.headers['x-request-id']) ?? null });
      });
    },
  );
  server.on('tlsClientError', () => {}); // a failed handshake is the client's problem; nothing reached us
  server.maxConnections = limits.maxConnections;
  const rotate = () => server.setSecureContext(tlsMaterial(opts.identity));
  opts.identity.on('rotated', rotate);

  const address = await listen(server, opts.port, opts.host);
  return {
    url: `https://${address.address}:${address.port}`,
    port: address.port,
    async close() {
      opts.identity.off('rotated', rotate);
      await drain(server);
      await app.close();
    },
  };
}

function verifyPeer(socket: TLSSocket, trustDomain: string): Peer {
  const cert = socket.getPeerX509Certificate();
  if (!cert) return { error: 'no client certificate' };
  if (!socket.authorized) return { error: `client certificate not trusted: ${socket.authorizationError}` };
  try {
    return {
      id: spiffeIdOf(cert.raw, trustDomain),
      key: cert.publicKey,
      cert,
      address: `${socket.remoteAddress}:${socket.remotePort}`,
      notBefore: Date.parse(cert.validFrom),
      notAfter: Date.parse(cert.validTo),
      kid: jwkThumbprint(cert.publicKey.export({ format: 'jwk' }) as EcJwk),
    };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/**
 * The request headers the filter sees: what the caller sent minus anything that could
 * impersonate the perimeter (`x-palisade-*`, client-certificate details, the fingerprint),
 * plus the request id and the trace context, as Envoy's connection manager would.
 */
function filterHeaders(req: IncomingMessage, requestId: string, traceparent: string, self: string, caller: string): Record<string, string | string[]> {
  const headers = forwardable(req.headers, perimeterHeader);
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue;
    const value = headers[name];
    if (typeof value !== 'string') headers[name] = value.join(', ');
  }
  headers['x-request-id'] = requestId;
  headers.traceparent = traceparent;
  headers['x-forwarded-proto'] = 'https';
  headers['x-forwarded-client-cert'] = `By=${self};URI=${caller}`;
  return headers;
}

/** Headers only the perimeter may set. */
const perimeterHeader = (name: string) => name.startsWith('x-palisade-') || name === 'x-forwarded-client-cert';

/** When the host does not hand back the decision record, the outcome still says enough. */
const FORWARDED: Decision = { decision: 'allow', status: 200, rule: null, mode: 'enforce', reason: 'forwarded' };

function impliedDecision(result: Outcome): Decision {
  if (result.kind !== 'reply') return FORWARDED;
  const decision = result.status === 401 ? 'unauthenticated' : 'deny';
  return { decision, status: result.status, rule: null, mode: 'enforce', reason: 'local reply' };
}

/** The application's response headers as the filter sees them: hop-by-hop ones dropped, repeats (set-cookie) kept apart. */
function responsePairs(headers: Record<string, string | string[] | undefined>): Pair[] {
  const pairs: Pair[] = [];
  const kept = forwardable(headers);
  for (const name in kept) {
    if (!Object.hasOwn(kept, name)) continue;
    const value = kept[name];
    if (typeof value === 'string') pairs.push([name, value]);
    else for (const v of value) pairs.push([name, v]);
  }
  return pairs;
}

/** Passes bytes through until `max`, then fails the stream (the upload is cut off). */
function limitBytes(max: number, onOverflow: () => void): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > max) {
        onOverflow();
        done(new Error('request body over the limit'));
      } else done(null, chunk);
    },
  });
}
