/**
 * What the inbound sidecar does with one request, whichever protocol carried it (HTTP/1.x
 * or HTTP/2; inbound.ts owns the listener): the caller's certificate, then the fingerprint,
 * then the identity context, then the compiled policy filter with exactly what Envoy would
 * give it; allowed requests stream to the application. Every step fails closed, and every
 * answer of the sidecar's own is in the caller's form (JSON, or gRPC for a gRPC request).
 */
import type { TLSSocket } from 'node:tls';
import type { Http2ServerRequest } from 'node:http2';
import type { KeyObject, X509Certificate } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { Transform } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { spiffeIdOf } from './peer.ts';
import { continueTrace } from './trace.ts';
import { FINGERPRINT_HEADER, FingerprintError, verifyFingerprint, type FingerprintClaims } from '../../spiffe/fingerprint.ts';
import type { ReplayCache } from '../../spiffe/replay-cache.ts';
import { IdentityContextError, type IdentityContext, type IdentityVerifier } from './identity-context.ts';
import type { FilterSlot, Lease } from './filter-slot.ts';
import { decisionOf, type Decision } from '../../testing/decision-line.ts';
import type { Outcome, Pair, UpstreamResponse } from '../../host/filter.ts';
import { GrpcStatus } from '../../host/grpc-reply.ts';
import { forwardable, firstHeader, upstreamFailure, hasBody, relay, wantsGrpc, responsePairs, headerObject, type ServerReply, type ServerRequest } from './http.ts';
import { replyLocally, grpcFailure, sendTrailersOnly, forwardAnswer } from './local-reply.ts';
import { logDecision, pathForLog, type DecisionRecord } from './decision-log.ts';
import { credentialOf, refusalOf, type PeerCredential } from './standing.ts';
import type { LiveKeys } from '../identity/live-keys.ts';
import type { DecisionAudit, Evidence } from './audit.ts';
import { FINGERPRINT_REASONS } from './refusal-reasons.ts';
import type { AppClient } from './app-client.ts';
import type { UpstreamAnswer } from './h2-session.ts';
import { isUpgrade, spliceUpgrade } from './websocket.ts';
import type { ServerResponse } from 'node:http';
import type { Malformed } from './h2-listener.ts';

export interface PipelineOptions {
  self: string;
  trustDomain: string;
  app: AppClient;
  filters: FilterSlot;
  identityContext?: IdentityVerifier;
  liveKeys?: LiveKeys;
  /** The clock callers' certificate validity is checked by (ms since the epoch). */
  now: () => number;
  replay: ReplayCache;
  skewSeconds: number;
  maxTtlSeconds: number;
  maxBodyBytes: number;
  logger: Logger;
  audit?: DecisionAudit;
  /** Every decision record, once its response is over (as it is logged), with its audit entry's line: the control plane's push (agent/control/decisions.ts). */
  onDecision?: (record: DecisionRecord, auditEntry: string | undefined) => void;
}

/** What a connection's client certificate established; `address` is the peer's ip:port, as Envoy's source.address. */
type Peer = ({ id: string; key: KeyObject; cert: X509Certificate; address: string } & PeerCredential) | { error: string };

/** Envoy's jwt_authn metadata namespace, where the filter reads `user` and `fingerprint`. */
const JWT_AUTHN = 'envoy.filters.http.jwt_authn';

export type RequestHandler = (req: ServerRequest, res: ServerReply, malformed?: Malformed) => Promise<void>;

export function requestPipeline(opts: PipelineOptions): RequestHandler {
  const { self, trustDomain, replay, skewSeconds, maxTtlSeconds, app } = opts;
  const peers = new WeakMap<TLSSocket, Peer>();

  /** The caller's identity is a property of the connection: worked out once per socket (an HTTP/2 session's, for its streams). */
  function peerOf(socket: TLSSocket): Peer {
    let peer = peers.get(socket);
    if (!peer) peers.set(socket, (peer = verifyPeer(socket, trustDomain)));
    return peer;
  }

  let inFlight = 0;

  async function handle(req: ServerRequest, res: ServerReply, malformed?: Malformed): Promise<void> {
    const started = performance.now();
    const trace = continueTrace(firstHeader(req.headers.traceparent));
    const requestId = firstHeader(req.headers['x-request-id']) ?? randomUUID();
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    // Filled in as the request goes; written once, when the caller's response is over.
    const record: DecisionRecord = {
      trace_id: trace.traceId, request_id: requestId, caller: null, target: self, method, path: pathForLog(path),
      decision: 'error', rule: null, mode: null, status: 0, reason: 'aborted', user: null, client_id: null, audit_index: null, latency_ms: 0,
    };
    let lease: Lease | undefined;
    const evidence: Evidence = {};
    let audited = false;
    /** The audit entry's stored line, once written (the control plane checks its inclusion). */
    let entry: string | undefined;
    /** The decision's audit entry, once per request; false: not written and the request must stop. */
    const audit = async (status: number) => {
      if (audited) return true;
      audited = true;
      record.status = status;
      if (!opts.audit) return true;
      const { proceed, written } = await opts.audit.record(record, evidence);
      record.audit_index = written?.seq ?? null;
      // Kept for the push only: otherwise every request in flight holds its kilobyte line until its response ends.
      if (opts.onDecision) entry = written?.line;
      return proceed;
    };
    inFlight++;
    res.once('close', () => {
      inFlight--;
      lease?.release();
      record.status = res.statusCode;
      record.latency_ms = Math.round((performance.now() - started) * 1000) / 1000;
      logDecision(opts.logger, record);
      opts.onDecision?.(record, entry);
    });

    /** A refusal by the sidecar itself, before or instead of the filter. */
    const refuse = async (status: number, error: string, reason: string) => {
      record.decision = status === 401 ? 'unauthenticated' : 'error';
      record.reason = reason;
      await audit(status);
      // HTTP/2 has no Connection header: an unread body is refused by the stream's own reset.
      const headers = req.httpVersionMajor === 2 ? undefined : { connection: status === 413 ? 'close' : 'keep-alive' };
      replyLocally(req, res, status, { error, request_id: requestId }, { headers });
    };

    const peer = peerOf(connectionOf(req));
    if ('error' in peer) return refuse(401, 'unauthenticated', peer.error);
    record.caller = peer.id;
    if (malformed) return refuse(malformed.status, 'bad_request', malformed.reason);
    const refusal = await refusalOf(peer, opts.liveKeys, opts.now());
    if (refusal) return refuse(refusal.status, refusal.code, refusal.reason);
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
    evidence.fingerprintClaims = fingerprint;

    let user: IdentityContext | undefined;
    if (opts.identityContext) {
      try {
        user = evidence.user = await opts.identityContext(authorization, { caller: peer.id, callerKey: peer.key, method, path });
        if (user) Object.assign(record, userOf(user));
      } catch (err) {
        if (!(err instanceof IdentityContextError)) throw err;
        return refuse(401, 'unauthenticated', `identity context ${err.reason}`);
      }
    }

    const declared = Number(firstHeader(req.headers['content-length']) ?? 0);
    if (!(declared <= opts.maxBodyBytes)) return refuse(413, 'payload_too_large', `body of ${firstHeader(req.headers['content-length'])} bytes`);

    lease = opts.filters.acquire();
    evidence.policySha256 = lease.sha256;
    let auditRefused = false;
    // The filter sees the request headers; the body streams to the application untouched.
    let upstream: UpstreamAnswer | undefined;
    let result: Outcome;
    try {
      result = await lease.filter.handleRequest(
        {
          method,
          path,
          authority: authorityOf(req),
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
              return localAnswer(req, 503, { error: 'unavailable', request_id: requestId });
            }
            const answer = await callApp(req, forwarded.headers, requestId);
            if ('failure' in answer) return answer.failure;
            upstream = answer.response;
            return { status: upstream.status, headers: responsePairs(upstream.headers) };
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
    if (result.kind === 'forward' && upstream?.upgraded) {
      return spliceUpgrade(res as ServerResponse, String(req.headers.upgrade), result.headers, upstream.upgraded);
    }
    if (result.kind === 'forward' && upstream) {
      if (app.protocol === 'http1') {
        writeHead(res, result.status, result.headers);
        return relay(upstream.body, res);
      }
      return forwardAnswer(res, result.status, headerObject(result.headers), upstream, true);
    }
    upstream?.body.destroy(); // a reply replaced the application's response
    // Local replies to a gRPC request come back from the host (and callApp) in gRPC form: trailers-only.
    if (wantsGrpc(req)) return sendTrailersOnly(res, result.headers);
    writeHead(res, result.status, result.headers);
    res.end(result.body);
  }

  /** Sends the request as the filter left it to the application; failures become Envoy-like local answers. */
  async function callApp(req: ServerRequest, headers: Pair[], requestId: string): Promise<{ response: UpstreamAnswer } | { failure: UpstreamResponse }> {
    if (app.protocol === 'http1' && wantsGrpc(req)) {
      const message = 'this service\'s application speaks HTTP/1.1 (--app-protocol http1); gRPC needs --app-protocol h2c';
      return { failure: grpcFailure(502, { error: 'grpc_needs_h2c', message, request_id: requestId }, GrpcStatus.UNIMPLEMENTED) };
    }
    let path = req.url ?? '/';
    let authority = authorityOf(req);
    const rest: Pair[] = [];
    for (const pair of headers) {
      const [name, value] = pair;
      if (name === ':path') path = value;
      else if (name === ':authority') authority = value;
      else if (!name.startsWith(':')) rest.push(pair);
    }
    // gRPC needs `te: trailers` end to end; it is hop-by-hop, so each HTTP/2 hop restates it.
    if (app.protocol === 'h2c' && firstHeader(req.headers.te) === 'trailers') rest.push(['te', 'trailers']);
    if (isUpgrade(req)) {
      if (!app.upgrade) return { failure: localAnswer(req, 502, { error: 'upgrade_needs_http1', request_id: requestId }) };
      try {
        return { response: await app.upgrade({ method: req.method ?? 'GET', path, authority, headers: rest, body: null }, String(req.headers.upgrade)) };
      } catch (err) {
        return { failure: localAnswer(req, upstreamFailure(err).status, { error: 'upgrade_refused', request_id: requestId }) };
      }
    }
    let overflow = false;
    // A gRPC call may stream for as long as it lives: its messages are the application's to bound, not a total.
    const body = !hasBody(req) ? null : wantsGrpc(req) ? req : req.pipe(limitBytes(opts.maxBodyBytes, () => (overflow = true)));
    try {
      return { response: await app.request({ method: req.method ?? 'GET', path, authority, headers: rest, body }) };
    } catch (err) {
      const { status, code } = overflow ? { status: 413, code: 'payload_too_large' } : upstreamFailure(err);
      return { failure: localAnswer(req, status, { error: code, request_id: firstHeader(req.headers['x-request-id']) ?? null }) };
    }
  }

  return handle;
}

/** The TLS connection a request came on: for HTTP/2, its session's (node gives each stream's request a socket proxy of its own). */
function connectionOf(req: ServerRequest): TLSSocket {
  return (req.httpVersionMajor === 2 ? (req as Http2ServerRequest).stream.session!.socket : req.socket) as TLSSocket;
}

/** The sidecar's answer as the filter's upstream callback returns it: JSON, or the gRPC form for gRPC. */
function localAnswer(req: ServerRequest, status: number, body: unknown): UpstreamResponse {
  if (wantsGrpc(req)) return grpcFailure(status, body);
  return { status, headers: [['content-type', 'application/json']], body: JSON.stringify(body) };
}

/** HTTP/2's `:authority`, HTTP/1's Host (inbound.ts refused an HTTP/2 request where both are present and differ). */
function authorityOf(req: ServerRequest): string {
  return firstHeader(req.headers[':authority']) ?? req.headers.host ?? '';
}

function writeHead(res: ServerReply, status: number, headers: Pair[]): void {
  if ('stream' in res) res.writeHead(status, headerObject(headers));
  else res.writeHead(status, headers);
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
      ...credentialOf(cert),
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
function filterHeaders(req: ServerRequest, requestId: string, traceparent: string, self: string, caller: string): Record<string, string | string[]> {
  const headers = forwardable(req.headers as Record<string, string | string[] | undefined>, perimeterHeader);
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

/** Who the identity context names, for the decision record: strings only, bounded as the control plane takes them. */
function userOf(context: IdentityContext): Pick<DecisionRecord, 'user' | 'client_id'> {
  const claim = (v: unknown) => (typeof v === 'string' && v.length > 0 ? v.slice(0, 300) : null);
  return { user: claim(context.claims.sub), client_id: claim(context.claims.client_id) ?? claim(context.claims.azp) };
}
