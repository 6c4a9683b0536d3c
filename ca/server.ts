import type { TLSSocket } from 'node:tls';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { NO_SCHEMAS } from '../platform/no-schemas.ts';
import { CertificateAuthority } from './ca.ts';
import { CaError } from './errors.ts';
import { FailureLimiter } from './limiter.ts';

export interface CaServerOptions {
  dir: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  svidTtlMs?: number;
  /** How long a renewed SVID's key stays in the JWKS (default 60 s). */
  supersedeGraceMs?: number;
  /** Renewals per SPIFFE ID and minute (default 30). */
  renewalsPerMinute?: number;
  /** The state store (store/open.ts syntax); default: the SQLite file in `dir`. */
  store?: string;
  /** Extra DNS names or IPs for the CA's own certificate (besides localhost and the listen host). */
  hostnames?: string[];
  /** Failed join attempts allowed per client address and minute (default 20). */
  joinFailureLimit?: number;
  logger?: boolean;
  /** A connection must complete its TLS handshake within this (default 10 s), else it is closed. */
  handshakeTimeoutMs?: number;
  /** Open connections per server process at most (default 1024); further ones are closed at once. */
  maxConnections?: number;
}

export interface CaServer {
  url: string;
  port: number;
  ca: CertificateAuthority;
  app: FastifyInstance;
  close(): Promise<void>;
}

const BODY_LIMIT = 16 * 1024;
const SERVER_CERT_TTL_MS = 7 * 86_400_000;
const SERVER_CERT_REFRESH_MS = 86_400_000;
/** Token failures that the limiter counts (anything else is not a guess at a token). */
const TOKEN_FAILURES = new Set(['token_unknown', 'token_used', 'token_expired']);

/**
 * The CA's HTTPS API. It asks every client for a certificate but lets the handshake succeed
 * without one: `join` is authenticated by the token, `renew` checks the client certificate
 * itself (issued by the root, unexpired, recorded, unrevoked). Admin operations (tokens,
 * revocation, mint) are deliberately absent: they are CLI commands on the state directory.
 */
export async function startCaServer(options: CaServerOptions): Promise<CaServer> {
  const { svidTtlMs, supersedeGraceMs, renewalsPerMinute, store } = options;
  const ca = await CertificateAuthority.open(options.dir, { svidTtlMs, supersedeGraceMs, renewalsPerMinute, store });
  try {
    return await serve(ca, options);
  } catch (err) {
    await ca.close(); // a PostgreSQL pool left open would keep the process alive
    throw err;
  }
}

async function serve(ca: CertificateAuthority, options: CaServerOptions): Promise<CaServer> {
  const host = options.host ?? '127.0.0.1';
  const names = [...new Set(['localhost', '127.0.0.1', '::1', host, ...(options.hostnames ?? [])])].filter((n) => n !== '0.0.0.0' && n !== '::');
  const serverCert = () => ca.issuer.signServerCert(names, SERVER_CERT_TTL_MS);
  const { certPem, keyPem } = await serverCert();
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: BODY_LIMIT,
    schemaController: NO_SCHEMAS,
    https: {
      key: keyPem, cert: certPem, ca: ca.issuer.rootPem, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2',
      handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
    },
  });
  app.server.maxConnections = options.maxConnections ?? 1024;
  const limiter = new FailureLimiter(options.joinFailureLimit ?? 20, 60_000);

  app.setErrorHandler((err: FastifyError | CaError, request, reply) => {
    if (err instanceof CaError) {
      if (err.retryAfterSeconds) reply.header('retry-after', Math.ceil(err.retryAfterSeconds));
      return sendError(reply, err.status, err.code, err.message);
    }
    const status = err.statusCode ?? 500;
    if (status >= 500) {
      request.log.error(err);
      return sendError(reply, 500, 'internal_error', 'internal error');
    }
    return sendError(reply, status, FASTIFY_CODES[err.code] ?? 'bad_request', err.message);
  });
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, 'not_found', `no route ${request.method} ${request.url}`));

  app.get('/healthz', async () => ({ status: 'ok', trust_domain: ca.trustDomain }));
  app.get('/v1/bundle', async (_request, reply) => reply.type('application/x-pem-file').send(ca.issuer.rootPem));
  app.get('/v1/bundle/jwks', async () => ca.bundleJwks());
  app.get('/v1/jwks', async (_request, reply) => reply.header('cache-control', 'max-age=5').send(await ca.liveJwks()));

  app.post('/v1/join', async (request) => {
    const wait = limiter.retryAfter(request.ip);
    if (wait > 0) throw new CaError(429, 'rate_limited', 'too many failed join attempts from this address; retry later', wait / 1000);
    const body = jsonBody(request);
    try {
      return await ca.join(body.token, body.csr); // awaited: a refusal must reach the limiter
    } catch (err) {
      if (err instanceof CaError && TOKEN_FAILURES.has(err.code)) limiter.fail(request.ip);
      throw err;
    }
  });
  app.post('/v1/renew', async (request) => {
    const body = jsonBody(request);
    const socket = request.raw.socket as TLSSocket;
    const peer = socket.getPeerX509Certificate?.() ?? undefined;
    return ca.renew(peer, body.csr);
  });

  await app.listen({ host, port: options.port ?? 8443 });
  const refresh = setInterval(() => {
    serverCert()
      .then(({ certPem, keyPem }) => app.server.setSecureContext({ key: keyPem, cert: certPem, ca: ca.issuer.rootPem }))
      .catch((err) => app.log.error(err));
  }, SERVER_CERT_REFRESH_MS).unref();
  const port = (app.server.address() as { port: number }).port;
  return {
    url: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    ca,
    app,
    async close() {
      clearInterval(refresh);
      await app.close();
      await ca.close();
    },
  };
}

const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
};

function sendError(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.status(status).send({ error: { code, message } });
}

/** POST bodies must be JSON objects; Fastify already enforced the content type and size. */
function jsonBody(request: FastifyRequest): Record<string, unknown> {
  const type = request.headers['content-type'] ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type)) throw new CaError(415, 'unsupported_media_type', 'content-type must be application/json');
  const body = request.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new CaError(400, 'invalid_request', 'body must be a JSON object');
  return body as Record<string, unknown>;
}
