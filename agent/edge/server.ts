/**
 * The edge gateway: an HTTPS ingress, with the edge workload's SVID as its certificate, that
 * authenticates every request's bearer token (bearer.ts), maps its claims into a user
 * context (claims.ts), picks the service by host and path (routes.ts) and sends the request
 * into the mesh through its own outbound side (mTLS + fingerprint) with a freshly minted
 * identity context for that service (handles.ts). Refusals are RFC 6750 challenges. Nothing
 * the client sends can pass for the perimeter's own headers: its `authorization` is
 * consumed here and `x-palisade-*` / `x-forwarded-client-cert` are dropped.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import type { Logger } from 'pino';
import type { SvidSource } from '../sidecar/svid.ts';
import { tlsMaterial } from '../sidecar/tls.ts';
import { continueTrace } from '../sidecar/trace.ts';
import { forwardable, firstHeader, sendJson, upstreamFailure, hasBody, listen, drain, relay } from '../sidecar/http.ts';
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
  const toMesh = new Pool(mesh.url, { connections: 64, keepAliveTimeout: 4_000 });

  async function handle(req: IncomingMessage, res: ServerResponse, record: EdgeRecord, traceparent: string): Promise<void> {
    const refuse = (err: BearerError) => {
      record.status = err.status;
      record.reason = err.message;
      const challenge = err.challenge(realm);
      sendJson(res, err.status, err.body(), challenge ? { 'www-authenticate': challenge } : {});
    };
    const path = req.url ?? '';
    let admitted;
    try {
      admitted = await admit(opts.routes, opts.authenticate, {
        path,
        host: req.headers.host ?? '',
        authorization: firstHeader(req.headers.authorization),
        repeated: req.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'authorization').length > 1,
      }, (claims) => (record.sub = typeof claims.sub === 'string' ? claims.sub : null));
    } catch (err) {
      if (err instanceof BearerError) return refuse(err);
      if (!(err instanceof NoRouteError)) throw err;
      record.status = 404;
      record.reason = 'no route';
      return sendJson(res, 404, noRouteBody(err));
    }
    const { claims, route } = admitted;
    record.route = route.key;
    record.target = route.spiffeId;
    const handle = handles.put(userContext(claims, opts.extraClaims), route.spiffeId, claims.exp);
    if (!handle) {
      record.status = 503;
      record.reason = 'too many requests in flight';
      return sendJson(res, 503, { error: { code: 'overloaded', message: 'too many requests in flight' } });
    }
    const headers = forwardable(req.headers, dropped);
    headers.host = route.name;
    headers.authorization = `Bearer ${handle}`;
    headers.traceparent = traceparent;
    headers['x-forwarded-proto'] = 'https';
    let upstream;
    try {
      upstream = await toMesh.request({ method: req.method ?? 'GET', path, headers, body: hasBody(req) ? req : null });
    } catch (err) {
      const failure = upstreamFailure(err);
      record.status = failure.status;
      record.reason = (err as Error).message;
      return sendJson(res, failure.status, { error: { code: failure.code, message: 'the service did not answer' } });
    }
    record.status = upstream.statusCode;
    record.reason = 'forwarded';
    res.writeHead(upstream.statusCode, forwardable(upstream.headers));
    relay(upstream.body, res);
  }

  const server: Server = createServer(
    {
      ...tlsMaterial(opts.identity),
      maxHeaderSize: 16 * 1024,
      headersTimeout: 10_000,
      requestTimeout: 30_000,
      connectionsCheckingInterval: 1_000,
      keepAliveTimeout: 5_000,
      handshakeTimeout: 10_000,
      noDelay: true,
    },
    (req, res) => {
      const started = performance.now();
      const path = req.url ?? '';
      const trace = continueTrace(req.headers.traceparent);
      const record: EdgeRecord = {
        trace_id: trace.traceId, method: req.method ?? 'GET', path: pathForLog(path),
        route: null, target: null, sub: null, status: 0, reason: 'aborted', latency_ms: 0,
      };
      res.once('close', () => {
        record.latency_ms = Math.round((performance.now() - started) * 1000) / 1000;
        opts.logger.info(record, 'edge');
      });
      handle(req, res, record, trace.traceparent).catch((err) => {
        record.reason = (err as Error).message;
        sendJson(res, 500, { error: { code: 'internal', message: 'internal error' } });
      });
    },
  );
  server.on('tlsClientError', () => {});
  server.maxConnections = 1024;
  const rotate = () => server.setSecureContext(tlsMaterial(opts.identity));
  opts.identity.on('rotated', rotate);
  let address;
  try {
    address = await listen(server, opts.port, opts.host);
  } catch (err) {
    await toMesh.close();
    await mesh.close();
    throw err;
  }
  return {
    url: `https://${address.address}:${address.port}`,
    port: address.port,
    meshUrl: mesh.url,
    async close() {
      opts.identity.off('rotated', rotate);
      await drain(server);
      await toMesh.close();
      await mesh.close();
    },
  };
}
