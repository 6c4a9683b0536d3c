/**
 * Inbound listener: TLS 1.3 with a required client SVID, negotiating HTTP/2 (`h2`) or
 * HTTP/1.1 by ALPN (h2-listener.ts, with its limits for both), in front of one request
 * pipeline (inbound-request.ts) for both.
 */
import type { Server as HttpServer, IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { SvidSource } from './svid.ts';
import { tlsMaterial } from './tls.ts';
import { trustDomainOf } from './peer.ts';
import { DEFAULT_SKEW_SECONDS, DEFAULT_TTL_SECONDS } from '../../spiffe/fingerprint.ts';
import { ReplayCache } from '../../spiffe/replay-cache.ts';
import type { IdentityVerifier } from './identity-context.ts';
import type { FilterSlot } from './filter-slot.ts';
import { firstHeader, listen, type ServerReply, type ServerRequest } from './http.ts';
import { replyLocally } from './local-reply.ts';
import type { LiveKeys } from '../identity/live-keys.ts';
import type { DecisionAudit } from './audit.ts';
import { requestPipeline, type PipelineOptions } from './inbound-request.ts';
import { appClient, type AppProtocol } from './app-client.ts';
import { handleUpgrade } from './websocket.ts';
import { secureH2Server, DEFAULT_LISTENER_LIMITS, type ListenerLimits } from './h2-listener.ts';
import type { Duplex } from 'node:stream';

export interface InboundLimits extends ListenerLimits {
  maxBodyBytes: number;
  /** The application must start answering within this (else 504) and keep its body flowing (HTTP/1.1 applications). */
  appHeadersTimeoutMs: number;
  appBodyTimeoutMs: number;
  appConnections: number;
}

export const DEFAULT_INBOUND_LIMITS: InboundLimits = {
  ...DEFAULT_LISTENER_LIMITS,
  maxBodyBytes: 1024 * 1024,
  appHeadersTimeoutMs: 15_000,
  appBodyTimeoutMs: 30_000,
  appConnections: 64,
};

export interface InboundOptions {
  host?: string;
  port?: number;
  /** The application's URL (origin), e.g. http://127.0.0.1:8080. */
  app: string;
  /** How the application is spoken to: `http1` (default) or `h2c` (cleartext HTTP/2, for gRPC services). */
  appProtocol?: AppProtocol;
  identity: SvidSource;
  filters: FilterSlot;
  identityContext?: IdentityVerifier;
  /**
   * The CA's live keys: every request's caller must hold one (revocation). Without them (a
   * PKI and no CA, as in some tests) only the trust bundle and validity are checked.
   */
  liveKeys?: LiveKeys;
  /** The clock callers' certificate validity is checked by (default Date.now; tests inject one to reach an expiry). */
  now?: () => number;
  replay?: ReplayCache;
  fingerprintTtlSeconds?: number;
  skewSeconds?: number;
  limits?: Partial<InboundLimits>;
  logger: Logger;
  /** One audit entry per decision, written before an allowed request is forwarded. */
  audit?: DecisionAudit;
  onDecision?: PipelineOptions['onDecision'];
}

export interface Listener {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startInbound(opts: InboundOptions): Promise<Listener> {
  const limits = { ...DEFAULT_INBOUND_LIMITS, ...opts.limits };
  const self = opts.identity.svid().spiffeId;
  const app = appClient(opts.app, opts.appProtocol ?? 'http1', limits);
  const handle = requestPipeline({
    self,
    trustDomain: trustDomainOf(self),
    app,
    filters: opts.filters,
    identityContext: opts.identityContext,
    liveKeys: opts.liveKeys,
    now: opts.now ?? Date.now,
    replay: opts.replay ?? new ReplayCache(),
    skewSeconds: opts.skewSeconds ?? DEFAULT_SKEW_SECONDS,
    maxTtlSeconds: opts.fingerprintTtlSeconds ?? DEFAULT_TTL_SECONDS,
    maxBodyBytes: limits.maxBodyBytes,
    logger: opts.logger,
    audit: opts.audit,
    onDecision: opts.onDecision,
  });
  const fail = (req: ServerRequest, res: ServerReply) => (err: unknown) => {
    opts.logger.error({ err: (err as Error).message }, 'inbound request failed');
    replyLocally(req, res, 500, { error: 'internal', request_id: firstHeader(req.headers['x-request-id']) ?? null });
  };

  const { server, drain } = secureH2Server(
    // The client certificate is checked per request instead, so a caller without a valid SVID gets a 401, not a bare TLS alert.
    { ...tlsMaterial(opts.identity), requestCert: true, rejectUnauthorized: false },
    limits,
    'inbound',
    opts.logger,
    (req, res, malformed) => void handle(req, res, malformed).catch(fail(req, res)),
  );
  // WebSocket (HTTP/1.1 Upgrade): decided like any request, then piped both ways.
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => handleUpgrade(req, socket, head, (q, r) => void handle(q, r).catch(fail(q, r))));
  const rotate = () => server.setSecureContext(tlsMaterial(opts.identity));
  opts.identity.on('rotated', rotate);

  const address = await listen(server as unknown as HttpServer, opts.port, opts.host);
  return {
    url: `https://${address.address}:${address.port}`,
    port: address.port,
    async close() {
      opts.identity.off('rotated', rotate);
      await drain();
      await app.close();
    },
  };
}
