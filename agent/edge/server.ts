/**
 * The edge gateway: an HTTPS ingress (HTTP/2 or HTTP/1.1 by ALPN, with the inbound
 * sidecar's listener and limits: h2-listener.ts), with the edge workload's SVID as its certificate, that
 * authenticates every request's bearer token (bearer.ts), maps its claims into a user
 * context (claims.ts), picks the service by host and path (routes.ts) and sends the request
 * into the mesh through its own outbound side (mTLS + fingerprint) with a freshly minted
 * identity context for that service (handles.ts), over one h2c session, so gRPC streams
 * through with its trailers. Refusals are RFC 6750 challenges (for gRPC clients, trailers-only
 * gRPC local replies: UNAUTHENTICATED for a 401). Nothing
 * the client sends can pass for the perimeter's own headers: its `authorization` is
 * consumed here and `x-palisade-*` / `x-forwarded-client-cert` are dropped.
 */
import type { Server } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { SvidSource } from '../sidecar/svid.ts';
import { tlsMaterial } from '../sidecar/tls.ts';
import { continueTrace } from '../sidecar/trace.ts';
import { forwardable, firstHeader, upstreamFailure, hasBody, listen, type ServerReply, type ServerRequest } from '../sidecar/http.ts';
import { replyLocally, forwardAnswer } from '../sidecar/local-reply.ts';
import { H2Session } from '../sidecar/h2-session.ts';
import { secureH2Server, DEFAULT_LISTENER_LIMITS, type ListenerLimits, type Malformed } from '../sidecar/h2-listener.ts';
import { startOutbound } from '../sidecar/outbound.ts';
import type { Listener } from '../sidecar/inbound.ts';
import { pathForLog } from '../sidecar/decision-log.ts';
import { BearerError } from './bearer-error.ts';
import type { Authenticate } from './bearer.ts';
import { userContext } from './claims.ts';
import type { EdgeRoute } from './routes.ts';
import { admit, NoRouteError, noRouteBody } from './admission.ts';
import { Handles } from './handles.ts';

export interface EdgeOptions {
  /** Loopback (127.0.0.1) unless told otherwise. */
  host?: string;
  port?: number;
  identity: SvidSource;
  routes: EdgeRoute[];
  authenticate: Authenticate;
  /** Claims mapped into the context beyond the standard ones. */
  extraClaims?: string[];
  contextTtlSeconds?: number;
  fingerprintTtlSeconds?: number;
  /** The `realm` of the challenges. */
  realm?: string;
  /** The client listener's bounds (HTTP/1.1 and HTTP/2): the inbound sidecar's by default. */
  limits?: Partial<ListenerLimits>;
  logger: Logger;
}

/** One JSON line per request at the edge. */
interface EdgeRecord {
  trace_id: string;
  method: string;
  path: string;
  route: string | null;
  target: string | null;
  sub: string | null;
  status: number;
  reason: string;
  latency_ms: number;
}

/** Headers only the perimeter may set, and the client's credential, which stops here. */
const dropped = (name: string) => name.startsWith('x-palisade-') || name === 'x-forwarded-client-cert' || name === 'authorization';

/** The edge's own outbound side answers within 15 s (504 otherwise); this only catches it hanging. */
const MESH_HEADERS_TIMEOUT_MS = 20_000;

export interface EdgeListener extends Listener {
  /** The edge's own outbound listener (loopback): it sends only requests the edge authenticated. */
  meshUrl: string;
}

export async function startEdge(opts: EdgeOptions): Promise<EdgeListener> {
  const realm = opts.realm ?? 'palisade';
  const handles = new Handles(opts.contextTtlSeconds);
  const mesh = await startOutbound({
    routes: Object.fromEntries(opts.routes.map((r) => [r.name, { url: r.url, spiffeId: r.spiffeId }])),
    identity: opts.identity,
    fingerprintTtlSeconds: opts.fingerprintTtlSeconds,
    authorize: handles.authorize,
    logger: opts.logger,
  });
  // Every request, HTTP/1.1 or HTTP/2 from the client, goes to the mesh side as a stream of
  // one h2c session: gRPC keeps its trailers (and trailers-only answers) end to end.
  const toMesh = new H2Session(mesh.url, () => ({}));

  async function handle(req: ServerRequest, res: ServerReply, record: EdgeRecord, traceparent: string, malformed?: Malformed): Promise<void> {
    const answer = (status: number, code: string, message: string, headers?: Record<string, string>) => {
      record.status = status;
      record.reason = message;
      replyLocally(req, res, status, { error: { code, message } }, { headers });
    };
    const refuse = (err: BearerError) => {
      const challenge = err.challenge(realm);
      const { error } = err.body();
      answer(err.status, error.code, error.message, challenge ? { 'www-authenticate': challenge } : {});
    };
    if (malformed) return refuse(new BearerError(malformed.status, 'invalid_request', malformed.reason));
    // A client that cancels (an HTTP/2 reset, a closed connection) while its token is checked
    // gets nothing sent into the mesh for it: rapid reset must not become work for the services.
    let gone = false;
    res.once('close', () => (gone = true));
    const path = req.url ?? '';
    let admitted;
    try {
      admitted = await admit(opts.routes, opts.authenticate, {
        path,
        // HTTP/2 names the authority in :authority (a host header beside it must agree: malformed otherwise).
        host: firstHeader(req.headers[':authority']) ?? req.headers.host ?? '',
        authorization: firstHeader(req.headers.authorization),
        repeated: req.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'authorization').length > 1,
      }, (claims) => (record.sub = typeof claims.sub === 'string' ? claims.sub : null));
    } catch (err) {
      if (err instanceof BearerError) return refuse(err);
      if (!(err instanceof NoRouteError)) throw err;
      const { error } = noRouteBody(err);
      return answer(404, error.code, error.message);
    }
    if (gone) return;
    const { claims, route } = admitted;
    record.route = route.key;
    record.target = route.spiffeId;
    const handle = handles.put(userContext(claims, opts.extraClaims), route.spiffeId, claims.exp);
    if (!handle) return answer(503, 'overloaded', 'too many requests in flight');
    const headers: Record<string, string | string[]> = forwardable(req.headers, dropped);
    headers.authorization = `Bearer ${handle}`;
    headers.traceparent = traceparent;
    headers['x-forwarded-proto'] = 'https';
    // gRPC needs `te: trailers` end to end; it is hop-by-hop, so each hop restates it.
    if (firstHeader(req.headers.te) === 'trailers') headers.te = 'trailers';
    const pseudo = { ':method': req.method ?? 'GET', ':path': path, ':authority': route.name, ':scheme': 'http' };
    let upstream;
    try {
      upstream = await toMesh.request({ ...headers, ...pseudo }, hasBody(req) ? req : null, MESH_HEADERS_TIMEOUT_MS);
    } catch (err) {
      const failure = upstreamFailure(err);
      answer(failure.status, failure.code, 'the service did not answer');
      record.reason = (err as Error).message; // the log keeps why
      return;
    }
    if (gone) return void upstream.body.destroy(); // cancels the mesh stream
    record.status = upstream.status;
    record.reason = 'forwarded';
    forwardAnswer(res, upstream.status, forwardable(upstream.headers), upstream, true);
  }

  const { server, drain } = secureH2Server(
    tlsMaterial(opts.identity),
    { ...DEFAULT_LISTENER_LIMITS, ...opts.limits },
    'edge',
    opts.logger,
    (req, res, malformed) => {
      const started = performance.now();
      const path = req.url ?? '';
      const trace = continueTrace(firstHeader(req.headers.traceparent));
      const record: EdgeRecord = {
        trace_id: trace.traceId, method: req.method ?? 'GET', path: pathForLog(path),
        route: null, target: null, sub: null, status: 0, reason: 'aborted', latency_ms: 0,
      };
      res.once('close', () => {
        record.latency_ms = Math.round((performance.now() - started) * 1000) / 1000;
        opts.logger.info(record, 'edge');
      });
      handle(req, res, record, trace.traceparent, malformed).catch((err) => {
        record.reason = (err as Error).message;
        replyLocally(req, res, 500, { error: { code: 'internal', message: 'internal error' } });
      });
    },
  );
  const rotate = () => server.setSecureContext(tlsMaterial(opts.identity));
  opts.identity.on('rotated', rotate);
  let address;
  try {
    address = await listen(server as unknown as Server, opts.port, opts.host);
  } catch (err) {
    toMesh.close();
    await mesh.close();
    throw err;
  }
  return {
    url: `https://${address.address}:${address.port}`,
    port: address.port,
    meshUrl: mesh.url,
    async close() {
      opts.identity.off('rotated', rotate);
      await drain();
      toMesh.close();
      await mesh.close();
    },
  };
}
