/**
 * The embedded sidecar, started inside the agent process: an inbound listener enforcing
 * the compiled policy filter and/or an outbound listener for the application's calls,
 * both using the agent's in-memory SVID.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import type { Registry } from '../metrics.ts';
import { loadFilter } from '../../host/filter.ts';
import type { SvidSource } from './svid.ts';
import { LiveKeys, type LiveKeysOptions } from '../identity/live-keys.ts';
import { FilterSlot, type FilterLoader, type FilterCheck } from './filter-slot.ts';
import { startInbound, type InboundLimits, type Listener } from './inbound.ts';
import { startOutbound, type Routes } from './outbound.ts';
import type { AppProtocol } from './app-client.ts';
import { createIdentityVerifier, type IdentityContextOptions, type IdentityVerifier } from './identity-context.ts';
import { ReplayCache, DEFAULT_REPLAY_CAPACITY } from '../../spiffe/replay-cache.ts';
import { createMeshVerifier } from './mesh-context.ts';
import { ReceivedContexts } from './received-contexts.ts';
import { delegation } from './delegation.ts';
import { createLogger, type DecisionRecord } from './decision-log.ts';
import { DEFAULT_SKEW_SECONDS } from '../../spiffe/fingerprint.ts';
import { observeReloads, registerFilterRoutes } from './admin.ts';
import type { DecisionAudit } from './audit.ts';

export interface SidecarOptions {
  identity: SvidSource;
  inbound?: {
    host?: string;
    port?: number;
    app: string;
    /** How the application is spoken to (default http1). */
    appProtocol?: AppProtocol;
    /** The compiled policy filter as a file, watched for replacement unless `watch` is false… */
    filterFile?: string;
    watch?: boolean;
    /** …or as bytes from elsewhere (the control plane), replaced through `filters`. */
    filter?: { wasm: Uint8Array; source: string };
    limits?: Partial<InboundLimits>;
    /** Every inbound decision record, once its response is over (the control plane's push). */
    onDecision?: (record: DecisionRecord, auditEntry: string | undefined) => void;
  };
  outbound?: { host?: string; port?: number; allowRemote?: boolean; routes: Routes };
  /** Plugin configuration for the filter, e.g. `{"mode":"dry-run"}`. */
  filterConfiguration?: string;
  /** How wasm becomes a filter; default: the strict host (host/) with `filterConfiguration`. */
  loadFilter?: FilterLoader;
  /** Acceptance check for every filter, e.g. the policy's case file. */
  checkFilter?: FilterCheck;
  identityContext?: IdentityContextOptions;
  /**
   * SPIFFE IDs whose mesh identity contexts the inbound side accepts (the edge, the sidecars
   * that call this one); the outbound side then re-issues received contexts for its targets.
   */
  identityIssuers?: string[];
  /**
   * Refresh period and staleness bound of the CA's live keys, which every inbound caller and
   * every server the outbound side reaches must hold; checked whenever `identity` can fetch
   * them (`liveKeyIds`, as the agent can). Open outbound connections are judged again as often.
   */
  revocation?: Pick<LiveKeysOptions, 'refreshMs' | 'maxStaleMs'>;
  /**
   * The clock of the per-request standing checks: callers' certificate validity and the live
   * keys' staleness (default Date.now). Tests advance it to reach an expiry without waiting.
   */
  now?: () => number;
  fingerprintTtlSeconds?: number;
  skewSeconds?: number;
  replayCapacity?: number;
  logger?: Logger;
  /** The agent's admin server and metrics registry, for `/v1/filter` and the reload metric. */
  admin?: FastifyInstance;
  registry?: Registry;
  /** The audit log every inbound decision is written to before the request goes on. */
  audit?: DecisionAudit;
}

export interface Sidecar {
  inbound?: Listener;
  outbound?: Listener;
  filters?: FilterSlot;
  close(): Promise<void>;
}

export async function startSidecar(opts: SidecarOptions): Promise<Sidecar> {
  return (await prepareSidecar(opts)).start(opts.identity);
}

/** A sidecar whose files are read and whose filter is loaded and checked, not yet listening. */
export interface PreparedSidecar {
  filters?: FilterSlot;
  /**
   * Starts the listeners with this identity (reload metric in `registry`, decisions written to
   * `audit`, both known only once the agent has joined); on failure everything prepared is closed.
   */
  start(identity: SvidSource, registry?: Registry, audit?: DecisionAudit): Promise<Sidecar>;
  close(): void;
}

/**
 * Everything that needs no identity: read and load the filter (it must pass its checks),
 * the identity issuer's JWKS. The agent does this before it spends its join token.
 */
export async function prepareSidecar(opts: Omit<SidecarOptions, 'identity'>): Promise<PreparedSidecar> {
  const logger = opts.logger ?? createLogger();
  const load: FilterLoader =
    opts.loadFilter ??
    ((wasm) =>
      loadFilter(wasm, {
        configuration: opts.filterConfiguration,
        name: 'palisade',
        // Per-request lines come back with each outcome; these are the VM's own (start, configure).
        log: (line) => {
          if (line.level === 'warn' || line.level === 'error' || line.level === 'critical') logger.warn({ filter: line.message }, 'filter log');
        },
      }));
  let filters: FilterSlot | undefined;
  let identityContext: IdentityVerifier | undefined;
  if (opts.inbound) {
    const { filterFile, filter } = opts.inbound;
    if ((filterFile === undefined) === (filter === undefined)) throw new Error('the inbound listener needs its filter as a file or as bytes, one of them');
    filters = filterFile === undefined
      ? await FilterSlot.create(filter!.wasm, load, opts.checkFilter, filter!.source)
      : await FilterSlot.create(await readFile(filterFile), load, opts.checkFilter, `file ${filterFile}`);
    try {
      identityContext = opts.identityContext && (await createIdentityVerifier({ ...opts.identityContext, skewSeconds: opts.skewSeconds }));
    } catch (err) {
      filters.close();
      throw err;
    }
  }
  return {
    filters,
    close: () => filters?.close(),
    async start(identity, registry = opts.registry, audit = opts.audit) {
      let liveKeys: LiveKeys | undefined;
      // Contexts are re-issued only by a workload that received them: inbound and outbound together.
      const received = opts.inbound && opts.identityIssuers?.length ? new ReceivedContexts() : undefined;
      const sidecar: Sidecar = {
        filters,
        async close() {
          await Promise.all([sidecar.inbound?.close(), sidecar.outbound?.close()]);
          filters?.close();
          liveKeys?.close();
        },
      };
      try {
        const { liveKeyIds } = identity;
        if (liveKeyIds && (opts.inbound || opts.outbound)) {
          liveKeys = await LiveKeys.start(() => liveKeyIds.call(identity), { ...opts.revocation, now: opts.now, log: (msg) => logger.warn(msg) });
        }
        if (opts.inbound && filters) {
          observeReloads(filters, logger, registry);
          if (opts.inbound.filterFile !== undefined && opts.inbound.watch !== false) filters.watchFile(opts.inbound.filterFile);
          if (opts.admin) registerFilterRoutes(opts.admin, filters);
          sidecar.inbound = await startInbound({
            ...opts.inbound,
            identity,
            filters,
            identityContext: received
              ? createMeshVerifier({ self: identity.svid().spiffeId, issuers: opts.identityIssuers!, skewSeconds: opts.skewSeconds ?? DEFAULT_SKEW_SECONDS, received, external: identityContext })
              : identityContext,
            liveKeys,
            now: opts.now,
            replay: new ReplayCache(opts.replayCapacity ?? DEFAULT_REPLAY_CAPACITY),
            fingerprintTtlSeconds: opts.fingerprintTtlSeconds,
            skewSeconds: opts.skewSeconds,
            logger,
            audit,
          });
        }
        if (opts.outbound) {
          sidecar.outbound = await startOutbound({
            ...opts.outbound, identity, fingerprintTtlSeconds: opts.fingerprintTtlSeconds, logger, authorize: received && delegation(received),
            liveKeys, now: opts.now, sweepMs: opts.revocation?.refreshMs,
          });
        }
      } catch (err) {
        await sidecar.close();
        throw err;
      }
      return sidecar;
    },
  };
}
