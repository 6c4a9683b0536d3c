/**
 * `palisade control serve`: the control plane's HTTPS API (docs/control.md).
 *
 * - Operator API (`/v1/policies…`, `/v1/rollout/…`): bearer tokens (tokens.ts); viewers
 *   read, admins also change.
 * - Agent API (`/v1/agent/…`, protocol in agent/control/protocol.ts): the agent's SVID as
 *   client certificate; an agent gets only the filter of the service its SVID names. Its
 *   standing (validity, and the CA's live keys as the sidecars check them) is judged on
 *   every request and again on an open stream, so a revoked or expired SVID is cut off.
 *
 * The server presents its own SVID (renewed by its identity agent) and asks every client
 * for a certificate without requiring one, as the CA does: operators have none. Every
 * request must name a Host this server answers to (DNS rebinding sends the attacker's name)
 * and carry no Origin but its own: no other web page has business here.
 */
import type { TLSSocket } from 'node:tls';
import type { X509Certificate } from 'node:crypto';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyPluginAsync, type FastifyReply, type FastifyRequest } from 'fastify';
import { NO_SCHEMAS } from '../platform/no-schemas.ts';
import type { Store } from '../store/store.ts';
import type { SvidSource } from '../agent/sidecar/svid.ts';
import { tlsMaterial } from '../agent/sidecar/tls.ts';
import { spiffeIdOf, trustDomainOf, PeerIdentityError } from '../agent/sidecar/peer.ts';
import { isLoopbackAuthority } from '../agent/identity/loopback.ts';
import { DEFAULT_LIVE_KEYS_REFRESH_MS, LiveKeys, type LiveKeysOptions } from '../agent/identity/live-keys.ts';
import { credentialOf, refusalOf, type PeerCredential } from '../agent/sidecar/standing.ts';
import { AGENT_INSTANCE_HEADER, REPORTS_PATH, STREAM_PATH } from '../agent/control/protocol.ts';
import { CONTROL_MIGRATIONS } from './migrations.ts';
import { ControlError } from './errors.ts';
import { PolicyRegistry } from './policies.ts';
import { Rollout, parseReport } from './rollout.ts';
import { Subscribers } from './subscribers.ts';
import { authenticate, type Operator } from './tokens.ts';

export interface ControlServerOptions {
  store: Store;
  /** The control plane's own SVID (an IdentityAgent), renewed in memory; the TLS certificate follows it. */
  identity: SvidSource;
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Names clients may reach this server by (Host header), besides loopback and `host`. */
  hostnames?: string[];
  logger?: boolean;
  now?: () => number;
  /** How the CA's live keys are fetched (when `identity` can: `liveKeyIds`); an open stream is re-judged as often. */
  revocation?: Pick<LiveKeysOptions, 'refreshMs' | 'maxStaleMs'>;
  /** Routes of components above the control plane (the Security Pane, dashboard/), given the store and registry. */
  plugins?: ((context: PluginContext) => FastifyPluginAsync)[];
}

/** What a plugin is given: the store, the policy registry, and the trust bundle (PEM) the control plane's identity holds. */
export interface PluginContext {
  store: Store;
  policies: PolicyRegistry;
  bundlePem: string;
}

export interface ControlServer {
  url: string;
  port: number;
  app: FastifyInstance;
  policies: PolicyRegistry;
  subscribers: Subscribers;
  close(): Promise<void>;
}

const BODY_LIMIT = 1024 * 1024;
const READ_ONLY = new Set(['GET', 'HEAD']);

declare module 'fastify' {
  interface FastifyRequest {
    operator?: Operator;
    agentId?: string;
    agentCredential?: PeerCredential;
  }
}

export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const { store, identity } = options;
  await store.migrate('control', CONTROL_MIGRATIONS);
  const host = options.host ?? '127.0.0.1';
  const names = new Set([host, ...(options.hostnames ?? [])].map((n) => n.toLowerCase()));
  const trustDomain = trustDomainOf(identity.svid().spiffeId);
  const policies = new PolicyRegistry(store, options.now);
  const rollout = new Rollout(store, options.now);
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: BODY_LIMIT,
    schemaController: NO_SCHEMAS,
    https: { ...tlsMaterial(identity), requestCert: true, rejectUnauthorized: false, handshakeTimeout: 10_000 },
  });
  const subscribers = await Subscribers.start(store, policies, (err) => app.log.error(err));
  const now = options.now ?? Date.now;
  const { liveKeyIds } = identity;
  const liveKeys = liveKeyIds && (await LiveKeys.start(() => liveKeyIds.call(identity), { ...options.revocation, now, log: (msg) => app.log.warn(msg) }));
  /** Throws the refusal of an agent whose SVID expired or whose key the CA no longer vouches for. */
  const checkStanding = async (credential: PeerCredential) => {
    const refusal = await refusalOf(credential, liveKeys, now());
    if (refusal) throw new ControlError(refusal.status, refusal.code, refusal.reason);
  };
  const rotated = () => app.server.setSecureContext(tlsMaterial(identity));
  identity.on('rotated', rotated);

  // Bodies stay text: a policy's diagnostics point at lines and columns of what was sent.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => done(null, body));
  app.setErrorHandler((err: FastifyError | ControlError, request, reply) => {
    if (err instanceof ControlError) return sendError(reply, err.status, err.code, err.message, err.details);
    const status = err.statusCode ?? 500;
    if (status >= 500) {
      request.log.error(err);
      return sendError(reply, 500, 'internal_error', 'internal error');
    }
    return sendError(reply, status, err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'body_too_large' : 'bad_request', err.message);
  });
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, 'not_found', `no route ${request.method} ${request.url}`));

  app.addHook('onRequest', async (request) => {
    refuseForeign(request, names);
    // The Security Pane's static files carry no data; what they show comes from /v1/ with a token.
    if (request.url === '/healthz' || request.url === '/dashboard' || request.url.startsWith('/dashboard/')) return;
    if (request.url.startsWith('/v1/agent/')) {
      const cert = agentCertificate(request);
      request.agentId = agentIdentity(cert, trustDomain);
      request.agentCredential = credentialOf(cert);
      await checkStanding(request.agentCredential);
    } else request.operator = await operator(request, store);
  });

  app.get('/healthz', async () => ({ status: 'ok', subscribers: subscribers.count }));

  app.get('/v1/policies', async () => ({ policies: await policies.list() }));
  app.get<{ Params: { name: string } }>('/v1/policies/:name', async (request) => policies.current(request.params.name));
  app.get<{ Params: { name: string } }>('/v1/policies/:name/versions', async (request) => ({ versions: await policies.versions(request.params.name) }));
  app.get<{ Params: { name: string; n: string } }>('/v1/policies/:name/versions/:n', async (request) => policies.version(request.params.name, versionNumber(request.params.n)));
  app.put<{ Params: { name: string } }>('/v1/policies/:name', async (request) =>
    policies.submit(request.params.name, textBody(request), request.operator!),
  );
  app.post<{ Params: { name: string } }>('/v1/policies/:name/mode', async (request) =>
    policies.setMode(request.params.name, jsonBody(request).mode, request.operator!),
  );
  app.post<{ Params: { name: string } }>('/v1/policies/:name/rollback', async (request) =>
    policies.rollback(request.params.name, jsonBody(request, true).version, request.operator!),
  );
  app.get<{ Params: { name: string } }>('/v1/rollout/:name', async (request) => {
    const current = await policies.current(request.params.name);
    const agents = await rollout.of(request.params.name);
    return {
      policy: current.name,
      version: current.version,
      sha256: current.sha256,
      // Every agent that reported runs the current bytes (a rollback to equal bytes counts).
      converged: agents.length > 0 && agents.every((a) => a.sha256 === current.sha256),
      agents,
    };
  });

  app.get(STREAM_PATH, async (request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    // A stream outlives its handshake: one whose SVID is revoked or expires meanwhile is cut (the agent reconnects, and is judged again).
    const judged = setInterval(() => {
      checkStanding(request.agentCredential!).catch((err: Error) => {
        request.log.warn({ agent: request.agentId, reason: err.message }, 'agent stream cut');
        reply.raw.destroy();
      });
    }, options.revocation?.refreshMs ?? DEFAULT_LIVE_KEYS_REFRESH_MS).unref();
    reply.raw.once('close', () => clearInterval(judged));
    await subscribers.add(request.agentId!, reply.raw);
  });
  app.post(REPORTS_PATH, async (request, reply) => {
    const report = parseReport(jsonBody(request));
    if ((await policies.serviceOf(report.policy)) !== request.agentId) {
      throw new ControlError(403, 'forbidden', `policy ${report.policy} does not protect ${request.agentId}`);
    }
    const instance = String(request.headers[AGENT_INSTANCE_HEADER] ?? '').slice(0, 100) || 'unnamed';
    await rollout.report(request.agentId!, instance, report);
    return reply.status(204).send();
  });

  for (const plugin of options.plugins ?? []) await app.register(plugin({ store, policies, bundlePem: identity.trustBundle().join('\n') }));

  await app.listen({ host, port: options.port ?? 0 });
  const port = (app.server.address() as { port: number }).port;
  return {
    url: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    app,
    policies,
    subscribers,
    async close() {
      identity.off('rotated', rotated);
      liveKeys?.close();
      await subscribers.close();
      await app.close();
    },
  };
}

function refuseForeign(request: FastifyRequest, names: Set<string>): void {
  const authority = request.headers.host ?? '';
  const name = authority.replace(/:\d{1,5}$/, '').replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (!isLoopbackAuthority(authority) && !names.has(name)) {
    throw new ControlError(403, 'bad_host', `Host ${JSON.stringify(authority)} is not a name this control plane answers to (--hostname)`);
  }
  // The one page allowed is this server's own (the Security Pane): a browser names its origin on some same-origin requests.
  if (request.headers.origin !== undefined && request.headers.origin !== `https://${authority}`) {
    throw new ControlError(403, 'bad_origin', 'the control plane does not answer web pages (Origin header present)');
  }
}

/** The client certificate, once it chained to the trust bundle. */
function agentCertificate(request: FastifyRequest): X509Certificate {
  const socket = request.raw.socket as TLSSocket;
  const peer = socket.getPeerX509Certificate?.();
  if (!socket.authorized || !peer) {
    throw new ControlError(401, 'unauthenticated', 'the agent API needs the agent\'s SVID as TLS client certificate, issued by this trust domain\'s CA');
  }
  return peer;
}

/** The SPIFFE ID an agent's certificate names. */
function agentIdentity(cert: X509Certificate, trustDomain: string): string {
  try {
    return spiffeIdOf(cert.raw, trustDomain);
  } catch (err) {
    if (err instanceof PeerIdentityError) throw new ControlError(401, 'unauthenticated', err.message);
    throw err;
  }
}

async function operator(request: FastifyRequest, store: Store): Promise<Operator> {
  const presented = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1];
  const who = presented === undefined ? undefined : await authenticate(store, presented);
  if (!who) throw new ControlError(401, 'unauthorized', 'this API needs a control-plane token: Authorization: Bearer <token from palisade control token create>');
  if (who.role !== 'admin' && !READ_ONLY.has(request.method)) throw new ControlError(403, 'forbidden', `token ${who.name} is a viewer: it reads, it does not change`);
  return who;
}

function versionNumber(text: string): number {
  if (!/^[1-9]\d{0,8}$/.test(text)) throw new ControlError(400, 'bad_request', 'a version is a positive integer');
  return Number(text);
}

function textBody(request: FastifyRequest): string {
  if (typeof request.body !== 'string') throw new ControlError(415, 'unsupported_media_type', 'send the policy as application/json');
  return request.body;
}

/** A JSON object body; `optional`: no body at all is `{}`. */
function jsonBody(request: FastifyRequest, optional = false): Record<string, unknown> {
  if (request.body === undefined && optional) return {};
  let body: unknown;
  try {
    body = JSON.parse(textBody(request));
  } catch (err) {
    if (err instanceof ControlError) throw err;
    throw new ControlError(400, 'invalid_json', 'body is not JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ControlError(400, 'bad_request', 'body must be a JSON object');
  return body as Record<string, unknown>;
}

function sendError(reply: FastifyReply, status: number, code: string, message: string, details: Record<string, unknown> = {}) {
  return reply.status(status).send({ error: { code, message, ...details } });
}
