/**
 * The agent's fingerprint signer for Envoy's egress filter (filters/egress/index.ts, docs/egress.md):
 * `POST /v1/fingerprint` on the agent's loopback admin server.
 *
 *   request  {"aud":"spiffe://td/ns/x/sa/card","htm":"GET","htu":"/cards/1","identity_token":"<JWT>"?}
 *   200      {"token":"<compact JWS>","exp":<unix seconds>}
 *   4xx/503  {"error":{"code":"…","message":"…"}}
 *
 * It signs only as the agent's own identity (iss = sub = the current SVID's SPIFFE ID; a
 * request cannot name another), with the SVID key held in memory, and with `kid` = the RFC
 * 7638 thumbprint the CA's JWKS publishes.
 *
 * It is the one state-changing admin route that needs no admin token
 * (OPEN_TO_LOCAL_CALLERS), on purpose: its caller is Envoy's egress filter, which could only
 * carry the token in its plugin configuration, and Envoy's admin interface (loopback,
 * unauthenticated) prints that configuration in /config_dump to every local process. Nor
 * would it protect anything: every local process may already send requests as the workload
 * through Envoy's outbound listener (or the sidecar's, loopback only), which adds
 * fingerprints, and a fingerprint alone is useless without an mTLS connection made with the
 * same SVID key, which never leaves the agent and Envoy. So the signer is exactly as private
 * as the outbound listener: loopback peers only; the admin server refuses non-loopback Host
 * names (DNS rebinding) and any Origin (web pages), and a browser cannot send its JSON body
 * without a CORS preflight, which is never answered.
 */
import { createPublicKey } from 'node:crypto';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { Counter, type Registry } from '../metrics.ts';
import type { Svid } from '../identity/agent.ts';
import { OPEN_TO_LOCAL_CALLERS } from '../identity/admin-access.ts';
import { isLoopbackAddress } from '../identity/loopback.ts';
import { jwkThumbprint, parseSpiffeId, type EcJwk } from '../../spiffe/pki.ts';
import { DEFAULT_TTL_SECONDS, MAX_FINGERPRINT_BYTES, signFingerprint } from '../../spiffe/fingerprint.ts';

export const SIGN_PATH = '/v1/fingerprint';
const MAX_BODY_BYTES = 16 * 1024;

export interface SignerOptions {
  /** The agent (or anything holding the current SVID): read at every request, so rotation applies at once. */
  identity: { svid(): Svid };
  /** Fingerprint lifetime (default 30 s, what verifiers accept at most). */
  ttlSeconds?: number;
  /** Where `palisade_fingerprints_signed_total{result}` is registered (e.g. the agent's registry). */
  registry?: Registry;
  now?: () => number;
}

export interface SignRequest {
  aud: string;
  htm: string;
  htu: string;
  identity_token?: string;
}

class SignError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$/; // an HTTP token
const PATH = /^\/[\x21-\x7e]*$/; // origin-form, visible ASCII
const TOKEN = /^[A-Za-z0-9_.-]+$/; // what the identity context accepts after `Bearer `

/** Checks a request body field by field; throws SignError with a stable code. */
export function parseSignRequest(body: unknown): SignRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new SignError(400, 'invalid_body', 'expected a JSON object {aud, htm, htu, identity_token?}');
  const fields = body as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!['aud', 'htm', 'htu', 'identity_token'].includes(key)) throw new SignError(400, 'unknown_field', `unknown field ${JSON.stringify(key)}: the agent signs only as itself`);
  }
  const { aud, htm, htu, identity_token: identityToken } = fields;
  if (typeof aud !== 'string') throw new SignError(400, 'invalid_aud', 'aud must be the target\'s SPIFFE ID');
  try {
    if (parseSpiffeId(aud).path === '') throw new Error('a workload SPIFFE ID has a path');
  } catch (err) {
    throw new SignError(400, 'invalid_aud', `aud: ${(err as Error).message}`);
  }
  if (typeof htm !== 'string' || !METHOD.test(htm)) throw new SignError(400, 'invalid_htm', 'htm must be the request method (an HTTP token)');
  if (typeof htu !== 'string' || htu.length > 8192 || !PATH.test(htu) || /[?#]/.test(htu)) {
    throw new SignError(400, 'invalid_htu', 'htu must be the request path without query: "/", then visible ASCII, no "?" or "#"');
  }
  if (identityToken !== undefined && (typeof identityToken !== 'string' || identityToken.length > MAX_FINGERPRINT_BYTES * 4 || !TOKEN.test(identityToken))) {
    throw new SignError(400, 'invalid_identity_token', 'identity_token must be the bearer token of the request (base64url and dots)');
  }
  return { aud, htm, htu, ...(identityToken === undefined ? {} : { identity_token: identityToken }) };
}

/** Fastify plugin: register on the agent's admin server (`createAdmin({ plugins })`). */
export function signEndpoint(options: SignerOptions): FastifyPluginAsync {
  const ttlSeconds = options.ttlSeconds ?? DEFAULT_TTL_SECONDS;
  const now = options.now ?? Date.now;
  const signed = options.registry && counter(options.registry);
  const kids = new WeakMap<Svid, string>();
  const kidOf = (svid: Svid) => {
    let kid = kids.get(svid);
    if (kid === undefined) kids.set(svid, (kid = jwkThumbprint(createPublicKey(svid.privateKey).export({ format: 'jwk' }) as unknown as EcJwk)));
    return kid;
  };
  const fail = (reply: FastifyReply, err: SignError) => {
    signed?.inc({ result: err.code });
    return reply.code(err.status).send({ error: { code: err.code, message: err.message } });
  };

  return async (app) => {
    // Fastify's own errors (media type, JSON syntax, size) in the project's shape.
    app.setErrorHandler((err: { statusCode?: number; code?: string; message: string }, _request, reply) => {
      const status = err.statusCode && err.statusCode < 500 ? err.statusCode : 500;
      const code = status === 415 ? 'unsupported_media_type' : status === 413 ? 'body_too_large' : status === 400 ? 'invalid_json' : 'internal_error';
      return fail(reply, new SignError(status, code, status === 500 ? 'internal error' : err.message));
    });
    app.post(SIGN_PATH, { bodyLimit: MAX_BODY_BYTES, ...OPEN_TO_LOCAL_CALLERS }, async (request, reply) => {
      if (!isLoopbackAddress(request.socket.remoteAddress)) return fail(reply, new SignError(403, 'not_loopback', 'the signer answers loopback callers only'));
      if (!request.headers['content-type']?.startsWith('application/json')) {
        return fail(reply, new SignError(415, 'unsupported_media_type', 'send the request as application/json'));
      }
      let req: SignRequest;
      try {
        req = parseSignRequest(request.body);
      } catch (err) {
        if (err instanceof SignError) return fail(reply, err);
        throw err;
      }
      const svid = options.identity.svid();
      const at = now();
      // A fingerprint never outlives the certificate of its key; an expired SVID signs nothing.
      const ttl = Math.min(ttlSeconds, Math.floor((svid.notAfter.getTime() - at) / 1000));
      if (ttl < 1) return fail(reply, new SignError(503, 'svid_expired', 'the agent holds no valid SVID'));
      const token = await signFingerprint(
        svid.privateKey,
        { caller: svid.spiffeId, target: req.aud, method: req.htm, path: req.htu, identityToken: req.identity_token },
        { ttlSeconds: ttl, now: at, kid: kidOf(svid) },
      );
      signed?.inc({ result: 'signed' });
      return { token, exp: Math.floor(at / 1000) + ttl };
    });
  };
}

function counter(registry: Registry): Counter<'result'> {
  const name = 'palisade_fingerprints_signed_total';
  return (registry.getSingleMetric(name) as Counter<'result'> | undefined)
    ?? new Counter({ name, help: 'Signing requests on /v1/fingerprint by result (signed or the error code)', labelNames: ['result'], registers: [registry] });
}
