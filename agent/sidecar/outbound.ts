/**
 * Outbound listener: the application speaks plain HTTP to it and names the target service
 * in the Host header. The sidecar opens mTLS with its SVID, accepts the server only if it
 * presents the SPIFFE ID the route expects, signs a fingerprint for the request, and passes
 * the identity context and the trace context on.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { PeerCertificate } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { Pool } from 'undici';
import type { Logger } from 'pino';
import type { Svid, SvidSource } from './svid.ts';
import { tlsMaterial } from './tls.ts';
import { serverIdentity, trustDomainOf } from './peer.ts';
import { continueTrace } from './trace.ts';
import { FINGERPRINT_HEADER, signFingerprint } from '../../spiffe/fingerprint.ts';
import { forwardable, firstHeader, sendJson, upstreamFailure, hasBody, listen, drain, relay } from './http.ts';
import type { Listener } from './inbound.ts';
import { isLoopbackHost } from '../identity/loopback.ts';

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
   * The SVID and the connection pools built from it, replaced together on rotation so a
   * request's fingerprint is always signed with the key of the certificate it is sent under.
   * A retired generation's pools close once its last request is done.
   */
  interface Generation { svid: Svid; pools: Map<string, Pool>; active: number; retired: boolean }
  let generation: Generation = { svid: opts.identity.svid(), pools: new Map(), active: 0, retired: false };
  const closePools = (gen: Generation) => {
    for (const pool of gen.pools.values()) void pool.close();
  };

  function poolFor(gen: Generation, name: string, route: Route): Pool {
    let pool = gen.pools.get(name);
    if (!pool) {
      pool = new Pool(new URL(route.url).origin, {
        connections: 64,
        headersTimeout: opts.headersTimeoutMs ?? 15_000,
        keepAliveTimeout: 4_000,
        connect: {
          ...tlsMaterial({ svid: () => gen.svid, trustBundle: () => opts.identity.trustBundle() }),
          servername: undefined,
          checkServerIdentity: (_host: string, cert: PeerCertificate) => serverIdentity(cert, route.spiffeId, trustDomain),
        },
      });
      gen.pools.set(name, pool);
    }
    return pool;
  }

  // New requests use the new SVID; requests on the old pools finish, then they close.
  const rotate = () => {
    const old = generation;
    generation = { svid: opts.identity.svid(), pools: new Map(), active: 0, retired: false };
    old.retired = true;
    if (old.active === 0) closePools(old);
  };
  opts.identity.on('rotated', rotate);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const hostHeader = req.headers.host ?? '';
    const name = hostHeader.replace(/:\d+$/, '').toLowerCase();
    const route = routes.get(name);
    if (!route) {
      return sendJson(res, 502, { error: { code: 'unknown_service', message: `no route for Host "${hostHeader}"; known: ${[...routes.keys()].join(', ')}` } });
    }
    const gen = generation;
    gen.active++;
    res.on('close', () => {
      if (--gen.active === 0 && gen.retired) closePools(gen);
    });
    const svid = gen.svid;
    const path = req.url ?? '/';
    const method = req.method ?? 'GET';
    const authorization = firstHeader(req.headers.authorization);
    const trace = continueTrace(req.headers.traceparent);
    const headers = forwardable(req.headers, (h) => h.startsWith('x-palisade-'));
    headers.host = hostHeader;
    headers.traceparent = trace.traceparent;
    headers[FINGERPRINT_HEADER] = await signFingerprint(
      svid.privateKey,
      { caller: svid.spiffeId, target: route.spiffeId, method, path, identityToken: authorization?.startsWith('Bearer ') ? authorization.slice(7) : undefined },
      { ttlSeconds: opts.fingerprintTtlSeconds },
    );
    let upstream;
    try {
      upstream = await poolFor(gen, name, route).request({ method, path, headers, body: hasBody(req.headers) ? req : null });
    } catch (err) {
      const message = (err as Error).message;
      opts.logger.warn({ trace_id: trace.traceId, target: route.spiffeId, err: message }, 'outbound request failed');
      if (/SPIFFE|URI SAN|trust domain/.test(message)) {
        return sendJson(res, 502, { error: { code: 'upstream_identity_mismatch', message } });
      }
      const failure = upstreamFailure(err);
      return sendJson(res, failure.status, { error: { code: failure.code, message } });
    }
    res.writeHead(upstream.statusCode, forwardable(upstream.headers));
    relay(upstream.body, res);
  }

  const server = createServer({ maxHeaderSize: 16 * 1024, headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000 }, (req, res) => {
    handle(req, res).catch((err) => sendJson(res, 500, { error: { code: 'internal', message: (err as Error).message } }));
  });
  const address = await listen(server, opts.port, opts.host);
  return {
    url: `http://${address.address}:${address.port}`,
    port: address.port,
    async close() {
      opts.identity.off('rotated', rotate);
      await drain(server);
      await Promise.all([...generation.pools.values()].map((p) => p.close()));
    },
  };
}

