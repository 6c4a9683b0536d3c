import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import type { IdentityAgent } from './agent.ts';

export interface AdminOptions {
  agent: IdentityAgent;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** More routes (e.g. the sidecar's PUT /v1/filter, the egress signer), registered before listening. */
  plugins?: FastifyPluginAsync[];
}

export interface AdminServer {
  /** Register further routes here before `listen()`. */
  app: FastifyInstance;
  listen(): Promise<{ url: string; port: number }>;
  close(): Promise<void>;
}

/**
 * The agent's local admin API (loopback only): health, Prometheus metrics and the SVID's
 * public facts. It never exposes the private key. Errors use the project's JSON shape.
 */
export async function createAdmin(options: AdminOptions): Promise<AdminServer> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopback(host)) throw new Error(`admin endpoint must listen on loopback, not ${host}`);
  const { agent } = options;
  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ error: { code: 'not_found', message: `no route ${request.method} ${request.url}` } }),
  );
  app.setErrorHandler((err: { statusCode?: number; message: string }, _request, reply) => {
    const status = err.statusCode && err.statusCode < 500 ? err.statusCode : 500;
    reply.status(status).send({ error: { code: status === 500 ? 'internal_error' : 'bad_request', message: status === 500 ? 'internal error' : err.message } });
  });

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
      not_before: svid.notBefore.toISOString(),
      not_after: svid.notAfter.toISOString(),
      certificate_pem: svid.chainPem,
    };
  });
  for (const plugin of options.plugins ?? []) await app.register(plugin);

  return {
    app,
    async listen() {
      await app.listen({ host, port: options.port ?? 0 });
      const port = (app.server.address() as { port: number }).port;
      return { url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`, port };
    },
    close: () => app.close(),
  };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
