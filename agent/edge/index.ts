/**
 * The edge as the agent runs it (`palisade agent --edge …`): everything that needs no
 * identity is done first (routes read, the provider discovered, flags checked), so a
 * mistake costs no join token; `start` then listens with the agent's SVID, or `extAuthz`
 * answers Envoy's ext_authz on the agent's socket (Envoy mode).
 */
import type { Logger } from 'pino';
import type { SvidSource } from '../sidecar/svid.ts';
import { discover } from './oidc.ts';
import { bearerAuthenticator } from './bearer.ts';
import { introspection } from './introspection.ts';
import { checkExtraClaims } from './claims.ts';
import { loadEdgeRoutes } from './routes.ts';
import { startEdge, type EdgeListener } from './server.ts';
import type { XdsService } from '../xds/server.ts';

export interface EdgeConfig {
  host?: string;
  port?: number;
  routesFile: string;
  issuer: string;
  audience: string;
  /** Required `typ` of JWT access tokens (e.g. at+jwt). */
  typ?: string;
  /** The edge's own client at the provider, for introspecting opaque tokens. */
  client?: { id: string; secret: string };
  extraClaims?: string[];
  skewSeconds?: number;
  contextTtlSeconds?: number;
  fingerprintTtlSeconds?: number;
}

export interface PreparedEdge {
  start(identity: SvidSource, logger: Logger): Promise<EdgeListener>;
  /** Envoy mode: the same checks and minting as Envoy's ext_authz service, for the agent's socket. */
  extAuthz(identity: SvidSource, logger: Logger): Promise<XdsService>;
}

export const DEFAULT_EDGE_SKEW_SECONDS = 30;

export async function prepareEdge(config: EdgeConfig): Promise<PreparedEdge> {
  const extraClaims = config.extraClaims ?? [];
  checkExtraClaims(extraClaims);
  const routes = await loadEdgeRoutes(config.routesFile);
  const provider = await discover(config.issuer);
  const skewSeconds = config.skewSeconds ?? DEFAULT_EDGE_SKEW_SECONDS;
  if (config.client && !provider.introspectionEndpoint) throw new Error(`${config.issuer} offers no introspection_endpoint for opaque tokens`);
  const authenticate = bearerAuthenticator({
    issuer: provider.issuer,
    audience: config.audience,
    jwksUri: provider.jwksUri,
    typ: config.typ,
    skewSeconds,
    introspect: config.client && introspection({
      endpoint: provider.introspectionEndpoint!,
      clientId: config.client.id,
      clientSecret: config.client.secret,
      issuer: provider.issuer,
      audience: config.audience,
      skewSeconds,
    }),
  });
  return {
    start: (identity, logger) =>
      startEdge({ host: config.host, port: config.port, identity, routes, authenticate, extraClaims, contextTtlSeconds: config.contextTtlSeconds, fingerprintTtlSeconds: config.fingerprintTtlSeconds, logger }),
    // gRPC and Envoy's protos load only in Envoy mode.
    extAuthz: async (identity, logger) => (await import('./ext-authz.ts')).createExtAuthzService({ identity, routes, authenticate, extraClaims, contextTtlSeconds: config.contextTtlSeconds, logger }),
  };
}
