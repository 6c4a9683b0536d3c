import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyReply, type FastifyRequest } from 'fastify';
import type { IdentityAgent } from './agent.ts';
import { isLoopbackAuthority, isLoopbackHost } from './loopback.ts';
import { isoTime } from '../../platform/utc-time.ts';
import { NO_SCHEMAS } from '../../platform/no-schemas.ts';
import type {} from './admin-access.ts'; // the adminToken route option (a fastify augmentation)

export interface AdminOptions {
  agent: IdentityAgent;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** More routes (e.g. the sidecar's PUT /v1/filter, the egress signer), registered before listening. */
  plugins?: FastifyPluginAsync[];
  /** The admin token (default: a new random one); see AdminServer.token. */
  token?: string;
}

export interface AdminServer {
  /** Register further routes here before `listen()`. */
  app: FastifyInstance;
  /**
   * The bearer token every state-changing route requires, new for each server. Whoever
   * starts the server hands it to its operator (the agent writes it to a 0600 file).
   */
  token: string;
  listen(): Promise<{ url: string; port: number }>;
  close(): Promise<void>;
}

const READ_ONLY = new Set(['GET', 'HEAD']);

/**
 * The agent's local admin API (loopback only): health, Prometheus metrics and the SVID's
 * public facts. It never exposes the private key. Errors use the project's JSON shape.
 *
 * Loopback is not a boundary between the users of one machine, nor against a browser on
 * it, so every request must name a loopback Host (DNS rebinding sends the attacker's name)
 * and carry no Origin (no web page has business here), and every route that changes state
 * (any method but GET/HEAD, including routes plugins add later) needs `Authorization:
 * Bearer <token>`.
 */
export async function createAdmin(options: AdminOptions): Promise<AdminServer> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopbackHost(host)) throw new Error(`admin endpoint must listen on loopback, not ${host}`);
  const { agent } = options;
  const token = options.token ?? randomBytes(32).toString('base64url');
  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024, schemaController: NO_SCHEMAS });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ error: { code: 'not_found', message: `no route ${request.method} ${request.url}` } }),
  );
  app.setErrorHandler((err: { statusCode?: number; message: string }, _request, reply) => {
    const status = err.statusCode && err.statusCode < 500 ? err.statusCode : 500;
    reply.status(status).send({ error: { code: status === 500 ? 'internal_error' : 'bad_request', message: status === 500 ? 'internal error' : err.message } });
  });
  // Added before any route or plugin, so it guards every one of them, 404s included.
  app.addHook('onRequest', async (request, reply) => refuseForeign(request, reply) ?? refuseUnauthenticated(request, reply, token));

  app.get('/healthz', async (_request, reply) => {
    const health = agent.health();
    return reply.status(health.status === 'expired' ? 503 : 200).send(health);
  });
  app.get('/metrics', async (_request, reply) => reply.type(agent.metrics.contentType).send(await agent.metrics.metrics()));
  app.get('/v1/svid', async () => {
    const svid = agent.svid();
    return {
      spiffe_id: svid.spiffeId,
      serial: svid.serial,
      not_before: isoTime(svid.notBefore),
      not_after: isoTime(svid.notAfter),
      certificate_pem: svid.chainPem,
    };
  });
  for (const plugin of options.plugins ?? []) await app.register(plugin);

  return {
    app,
    token,
    async listen() {
      await app.listen({ host, port: options.port ?? 0 });
      const port = (app.server.address() as { port: number }).port;
      return { url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`, port };
    },
    close: () => app.close(),
  };
}

/** DNS rebinding and cross-site requests from a browser on this machine. */
function refuseForeign(request: FastifyRequest, reply: FastifyReply): FastifyReply | undefined {
  if (!isLoopbackAuthority(request.headers.host)) {
    return reply.status(403).send({ error: { code: 'bad_host', message: 'Host must be a loopback address' } });
  }
  if (request.headers.origin !== undefined) {
    return reply.status(403).send({ error: { code: 'bad_origin', message: 'the admin API does not answer web pages (Origin header present)' } });
  }
  return undefined;
}

function refuseUnauthenticated(request: FastifyRequest, reply: FastifyReply, token: string): FastifyReply | undefined {
  const needed = request.routeOptions.config?.adminToken ?? !READ_ONLY.has(request.method);
  if (!needed) return undefined;
  const presented = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1];
  if (presented !== undefined && sameSecret(presented, token)) return undefined;
  return reply
    .status(401)
    .header('www-authenticate', 'Bearer')
    .send({ error: { code: 'unauthorized', message: 'this route needs the admin token: Authorization: Bearer <contents of the agent\'s admin token file>' } });
}

/** Constant-time comparison; hashing first makes the lengths equal without revealing them. */
function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}
