/**
 * The edge in Envoy mode (docs/envoy.md, "The edge in Envoy mode"): Envoy's `ext_authz`
 * filter asks the agent, over gRPC `envoy.service.auth.v3.Authorization` on the agent's
 * 0600 Unix socket, about each client request. The agent re-verifies the bearer token itself
 * (admission.ts, the Node edge's own code: an endpoint that signed whatever claims it was
 * given would let any local process mint contexts for any user) and answers either
 *
 * - OK, with the request's new `authorization` (the identity context, minted with the edge's
 *   SVID for the route's service and bound to this method and path) and `:authority` = the
 *   route's name, which selects Envoy's cluster and the egress filter's fingerprint
 *   audience, so Envoy forwards the request only where the context's `aud` points; or
 * - DENIED, with exactly the status, RFC 6750 challenge and JSON body the Node edge answers.
 */
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { SvidSource } from '../sidecar/svid.ts';
import { mintContext } from '../sidecar/context-token.ts';
import { pathForLog } from '../sidecar/decision-log.ts';
import { grpcService } from '../../envoy/protos.ts';
import type { XdsService } from '../xds/server.ts';
import { BearerError } from './bearer-error.ts';
import type { Authenticate } from './bearer.ts';
import { userContext } from './claims.ts';
import type { EdgeRoute } from './routes.ts';
import { admit, NoRouteError, noRouteBody } from './admission.ts';

export const EXT_AUTHZ_PROTO = 'envoy/service/auth/v3/external_auth.proto';
export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';

/** google.rpc.Code values Envoy reads: only OK lets the request through. */
const RPC_OK = 0;
const RPC_UNAUTHENTICATED = 16;
const RPC_PERMISSION_DENIED = 7;

export interface ExtAuthzOptions {
  identity: SvidSource;
  routes: EdgeRoute[];
  authenticate: Authenticate;
  extraClaims?: string[];
  contextTtlSeconds?: number;
  realm?: string;
  logger: Logger;
}

/** The part of Envoy's CheckRequest the edge reads (proto field names, as the loader keeps them). */
interface CheckRequest {
  attributes?: { request?: { http?: { method?: string; path?: string; host?: string; headers?: Record<string, string> } } };
}

type Header = { header: { key: string; value: string }; append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' };
const header = (key: string, value: string): Header => ({ header: { key, value }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' });

function denied(status: number, body: unknown, challenge?: string) {
  const headers = [header('content-type', 'application/json')];
  if (challenge) headers.push(header('www-authenticate', challenge));
  return {
    status: { code: status === 401 ? RPC_UNAUTHENTICATED : RPC_PERMISSION_DENIED },
    denied_response: { status: { code: status }, headers, body: JSON.stringify(body) },
  };
}

export function createExtAuthzService(opts: ExtAuthzOptions): XdsService {
  const realm = opts.realm ?? 'palisade';

  async function check(request: CheckRequest) {
    const http = request.attributes?.request?.http ?? {};
    const method = http.method ?? '';
    const path = http.path ?? '';
    const authorization = http.headers?.authorization;
    const record = { method, path: pathForLog(path), route: null as string | null, target: null as string | null, status: 200, reason: 'admitted' };
    try {
      const { claims, route } = await admit(opts.routes, opts.authenticate, {
        path,
        host: http.host ?? '',
        authorization,
        // Envoy joins repeated headers with ",", which no b64token contains.
        repeated: authorization?.includes(',') ?? false,
      });
      record.route = route.key;
      record.target = route.spiffeId;
      const context = await mintContext({
        svid: opts.identity.svid(),
        target: route.spiffeId,
        method,
        path,
        user: userContext(claims, opts.extraClaims),
        ttlSeconds: opts.contextTtlSeconds,
        notAfter: claims.exp,
      });
      return { status: { code: RPC_OK }, ok_response: { headers: [header('authorization', `Bearer ${context}`), header(':authority', route.name)] } };
    } catch (err) {
      record.reason = (err as Error).message;
      if (err instanceof BearerError) {
        record.status = err.status;
        return denied(err.status, err.body(), err.challenge(realm));
      }
      if (err instanceof NoRouteError) {
        record.status = 404;
        return denied(404, noRouteBody(err));
      }
      record.status = 500;
      return denied(500, { error: { code: 'internal', message: 'internal error' } });
    } finally {
      opts.logger.info(record, 'edge ext_authz');
    }
  }

  return {
    definition: grpcService(EXT_AUTHZ_PROTO, AUTHORIZATION_SERVICE).service,
    implementation: {
      Check(call: ServerUnaryCall<CheckRequest, unknown>, callback: sendUnaryData<unknown>) {
        void check(call.request).then((response) => callback(null, response));
      },
    },
  };
}
