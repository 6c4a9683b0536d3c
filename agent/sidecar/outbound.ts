/**
 * Outbound listener: the application speaks plain HTTP/1.1 or HTTP/2 (h2c with prior
 * knowledge, as gRPC clients do) to it and names the target service in the Host header or
 * `:authority`. The sidecar opens mTLS with its SVID (HTTP/2 when the peer offers it, one
 * connection multiplexing the requests), accepts the server only if it presents the SPIFFE
 * ID the route expects and its SVID stands (valid, its key among the CA's live keys: judged
 * on every new connection and again on the open ones every refresh), signs a fingerprint
 * for each request, and passes the identity context and the trace context on.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { createServer as createH2cServer } from 'node:http2';
import type { PeerCertificate } from 'node:tls';
import type { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Svid, SvidSource } from './svid.ts';
import { tlsMaterial } from './tls.ts';
import { serverIdentity, trustDomainOf } from './peer.ts';
import { continueTrace } from './trace.ts';
import { FINGERPRINT_HEADER, signFingerprint } from '../../spiffe/fingerprint.ts';
import { forwardable, firstHeader, upstreamFailure, hasBody, listen, drain, wantsGrpc, responsePairs, type ServerReply, type ServerRequest } from './http.ts';
import { replyLocally, forwardAnswer } from './local-reply.ts';
import { PeerClient } from './peer-client.ts';
import { credentialOf, refusalOf } from './standing.ts';
import { DEFAULT_LIVE_KEYS_REFRESH_MS, type LiveKeys } from '../identity/live-keys.ts';
import { acceptH2cPriorKnowledge } from './h2c-sniff.ts';
import { handleUpgrade, isUpgrade, spliceUpgrade } from './websocket.ts';
import type { Listener } from './inbound.ts';
import { isLoopbackHost } from '../identity/loopback.ts';
import { DelegationError, type Authorize } from './delegation.ts';

export interface Route {
  /** The target's inbound sidecar, e.g. https://127.0.0.1:15006. */
  url: string;
  spiffeId: string;
}
export type Routes = Record<string, Route>;

export interface OutboundOptions {
  /** Loopback (default 127.0.0.1) unless `allowRemote`: whoever reaches this listener acts as the workload. */
  host?: string;
  port?: number;
  allowRemote?: boolean;
  routes: Routes;
  identity: SvidSource;
  fingerprintTtlSeconds?: number;
  logger: Logger;
  /** The target must start answering within this, else 504. */
  headersTimeoutMs?: number;
  /** Works out the `authorization` sent (delegation.ts: a received context re-issued for the target); default: passed on as sent. */
  authorize?: Authorize;
  /** The CA's live keys, which every server's SVID must hold (as every caller's inbound); without them, validity alone. */
  liveKeys?: LiveKeys;
  /** The standing checks' clock (default Date.now). */
  now?: () => number;
  /** How often open connections are judged again (default: the live keys' refresh, 5 s). */
  sweepMs?: number;
}

/** A server the outbound side will not talk to (any more): its SVID expired or the CA no longer vouches for its key. */
class UpstreamRefusal extends Error {
  constructor(readonly status: 502 | 503, readonly code: string, message: string) {
    super(message);
  }
}

/** Reads and checks a routes file; throws with a message naming the file and the entry. */
export async function loadRoutes(file: string): Promise<Routes> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read routes ${file}: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error(`${file}: expected an object mapping service names to { url, spiffeId }`);
  for (const [name, route] of Object.entries(doc)) {
    const r = route as Partial<Route>;
    if (typeof r?.url !== 'string' || !r.url.startsWith('https://') || typeof r.spiffeId !== 'string' || !r.spiffeId.startsWith('spiffe://')) {
      throw new Error(`${file}: route "${name}" needs "url" (https://…) and "spiffeId" (spiffe://…)`);
    }
    trustDomainOf(r.spiffeId); // throws on a malformed SPIFFE ID
  }
  return doc as Routes;
}

export async function startOutbound(opts: OutboundOptions): Promise<Listener> {
  if (opts.host !== undefined && !opts.allowRemote && !isLoopbackHost(opts.host)) {
    throw new Error(`the outbound listener signs requests as this workload and listens on loopback only, not ${opts.host} (allowRemote to expose it)`);
  }
  const trustDomain = trustDomainOf(opts.identity.svid().spiffeId);
  const routes = new Map(Object.entries(opts.routes).map(([name, route]) => [name.toLowerCase(), route]));
  /**
   * The SVID and the peer connections built from it, replaced together on rotation so a
   * request's fingerprint is always signed with the key of the certificate it is sent under.
   * A retired generation's connections close once its last request is done.
   */
  interface Generation { svid: Svid; peers: Map<string, PeerClient>; active: number; retired: boolean }
  let generation: Generation = { svid: opts.identity.svid(), peers: new Map(), active: 0, retired: false };
  const closePeers = (gen: Generation) => Promise.all([...gen.peers.values()].map((peer) => peer.close()));
  const now = opts.now ?? Date.now;
  const judge = async (cert: X509Certificate | undefined) => {
    if (!cert) throw new UpstreamRefusal(502, 'upstream_untrusted', 'the server presented no certificate');
    const refusal = await refusalOf(credentialOf(cert), opts.liveKeys, now(), 'server');
    if (refusal?.code === 'unauthenticated') throw new UpstreamRefusal(502, 'upstream_untrusted', refusal.reason);
    if (refusal) throw new UpstreamRefusal(503, refusal.code, refusal.reason);
  };
  const sweeper = setInterval(() => {
    for (const peer of generation.peers.values()) void peer.sweep();
  }, opts.sweepMs ?? DEFAULT_LIVE_KEYS_REFRESH_MS).unref();

  function peerFor(gen: Generation, name: string, route: Route): PeerClient {
    let peer = gen.peers.get(name);
    if (!peer) {
      peer = new PeerClient(
        route.url,
        {
          ...tlsMaterial({ svid: () => gen.svid, trustBundle: () => opts.identity.trustBundle() }),
          servername: undefined,
          checkServerIdentity: (_host: string, cert: PeerCertificate) => serverIdentity(cert, route.spiffeId, trustDomain),
        },
        opts.headersTimeoutMs ?? 15_000,
        judge,
      );
      gen.peers.set(name, peer);
    }
    return peer;
  }

  // New requests use the new SVID; requests on the old connections finish, then they close.
  const rotate = () => {
    const old = generation;
    generation = { svid: opts.identity.svid(), peers: new Map(), active: 0, retired: false };
    old.retired = true;
    if (old.active === 0) void closePeers(old);
  };
  opts.identity.on('rotated', rotate);

  async function handle(req: ServerRequest, res: ServerReply): Promise<void> {
    // HTTP/2 (h2c) names the target in :authority, HTTP/1 in Host.
    const hostHeader = firstHeader(req.headers[':authority']) ?? req.headers.host ?? '';
    const name = hostHeader.replace(/:\d+$/, '').toLowerCase();
    const route = routes.get(name);
    if (!route) {
      return replyLocally(req, res, 502, { error: { code: 'unknown_service', message: `no route for Host "${hostHeader}"; known: ${[...routes.keys()].join(', ')}` } });
    }
    const gen = generation;
    gen.active++;
    res.on('close', () => {
      if (--gen.active === 0 && gen.retired) void closePeers(gen);
    });
    const svid = gen.svid;
    const path = req.url ?? '/';
    const method = req.method ?? 'GET';
    let authorization = firstHeader(req.headers.authorization);
    try {
      if (opts.authorize) authorization = await opts.authorize(authorization, { svid, target: route.spiffeId, method, path });
    } catch (err) {
      if (!(err instanceof DelegationError)) throw err;
      return replyLocally(req, res, err.status, { error: { code: err.code, message: err.message } });
    }
    const trace = continueTrace(firstHeader(req.headers.traceparent));
    const headers = forwardable(req.headers as Record<string, string | string[] | undefined>, (h) => h.startsWith('x-palisade-') || h === 'authorization');
    if (authorization !== undefined) headers.authorization = authorization;
    headers.traceparent = trace.traceparent;
    headers[FINGERPRINT_HEADER] = await signFingerprint(
      svid.privateKey,
      { caller: svid.spiffeId, target: route.spiffeId, method, path, identityToken: authorization?.startsWith('Bearer ') ? authorization.slice(7) : undefined },
      { ttlSeconds: opts.fingerprintTtlSeconds },
    );
    const peer = peerFor(gen, name, route);
    let upstream;
    try {
      if (wantsGrpc(req) && !(await peer.speaksH2())) {
        return replyLocally(req, res, 502, { error: { code: 'upstream_not_h2', message: `${route.spiffeId} does not offer HTTP/2, which gRPC needs` } });
      }
      // gRPC needs `te: trailers` end to end; it is hop-by-hop, so each hop restates it.
      if (firstHeader(req.headers.te) === 'trailers') headers.te = 'trailers';
      const request = { method, path, authority: hostHeader, headers, body: hasBody(req) ? req : null };
      upstream = isUpgrade(req) ? await peer.upgrade(request, String(req.headers.upgrade)) : await peer.request(request);
    } catch (err) {
      const message = (err as Error).message;
      opts.logger.warn({ trace_id: trace.traceId, target: route.spiffeId, err: message }, 'outbound request failed');
      if (err instanceof UpstreamRefusal) return replyLocally(req, res, err.status, { error: { code: err.code, message } });
      if (/SPIFFE|URI SAN|trust domain/.test(message)) {
        return replyLocally(req, res, 502, { error: { code: 'upstream_identity_mismatch', message } });
      }
      const failure = upstreamFailure(err);
      return replyLocally(req, res, failure.status, { error: { code: failure.code, message } });
    }
    if (upstream.upgraded) return spliceUpgrade(res as ServerResponse, String(req.headers.upgrade), responsePairs(upstream.headers), upstream.upgraded);
    forwardAnswer(res, upstream.status, forwardable(upstream.headers), upstream, true);
  }

  const http1 = createServer({ maxHeaderSize: 16 * 1024, headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000 });
  const h2c = createH2cServer({ settings: { maxHeaderListSize: 16 * 1024, enablePush: false } });
  const onRequest = (req: ServerRequest, res: ServerReply) => {
    handle(req, res).catch((err) => replyLocally(req, res, 500, { error: { code: 'internal', message: (err as Error).message } }));
  };
  http1.on('request', onRequest);
  http1.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => handleUpgrade(req, socket, head, onRequest));
  h2c.on('request', onRequest);
  const sessions = acceptH2cPriorKnowledge(http1, h2c);
  const address = await listen(http1, opts.port, opts.host);
  return {
    url: `http://${address.address}:${address.port}`,
    port: address.port,
    async close() {
      opts.identity.off('rotated', rotate);
      clearInterval(sweeper);
      // HTTP/2 sessions get GOAWAY and the same 2 s as HTTP/1.1 requests in flight (drain).
      for (const session of sessions) session.close();
      const cut = setTimeout(() => sessions.forEach((session) => session.destroy()), 2_000);
      await drain(http1);
      clearTimeout(cut);
      await closePeers(generation);
    },
  };
}

