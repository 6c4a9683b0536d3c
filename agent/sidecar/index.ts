/**
 * The embedded sidecar, started inside the agent process: an inbound listener enforcing
 * the compiled policy filter and/or an outbound listener for the application's calls,
 * both using the agent's in-memory SVID.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { loadFilter } from '../../host/filter.ts';
import type { SvidSource } from './svid.ts';
import { FilterSlot, type FilterLoader, type FilterCheck } from './filter-slot.ts';
import { startInbound, type InboundLimits, type Listener } from './inbound.ts';
import { startOutbound, type Routes } from './outbound.ts';
import { createIdentityVerifier, type IdentityContextOptions } from './identity-context.ts';
import { ReplayCache, DEFAULT_REPLAY_CAPACITY } from '../../spiffe/replay-cache.ts';
import { createLogger } from './decision-log.ts';
import { observeReloads, registerFilterRoutes } from './admin.ts';
import type { DecisionAudit } from './audit.ts';

export interface SidecarOptions {
  identity: SvidSource;
  inbound?: {
    host?: string;
    port?: number;
    app: string;
    /** The compiled policy filter; watched for replacement unless `watch` is false. */
    filterFile: string;
    watch?: boolean;
    limits?: Partial<InboundLimits>;
  };
  outbound?: { host?: string; port?: number; routes: Routes };
  /** Plugin configuration for the filter, e.g. `{"mode":"dry-run"}`. */
  filterConfiguration?: string;
  /** How wasm becomes a filter; default: the strict host (host/) with `filterConfiguration`. */
  loadFilter?: FilterLoader;
  /** Acceptance check for every filter, e.g. the policy's case file. */
  checkFilter?: FilterCheck;
  identityContext?: IdentityContextOptions;
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
  const sidecar: Sidecar = {
    async close() {
      await Promise.all([sidecar.inbound?.close(), sidecar.outbound?.close()]);
      sidecar.filters?.close();
    },
  };
  try {
    if (opts.inbound) {
      const { filterFile } = opts.inbound;
      const filters = await FilterSlot.create(await readFile(filterFile), load, opts.checkFilter, `file ${filterFile}`);
      sidecar.filters = filters;
      observeReloads(filters, logger, opts.registry);
      if (opts.inbound.watch !== false) filters.watchFile(filterFile);
      if (opts.admin) registerFilterRoutes(opts.admin, filters);
      sidecar.inbound = await startInbound({
        ...opts.inbound,
        identity: opts.identity,
        filters,
        identityContext: opts.identityContext && (await createIdentityVerifier({ ...opts.identityContext, skewSeconds: opts.skewSeconds })),
        replay: new ReplayCache(opts.replayCapacity ?? DEFAULT_REPLAY_CAPACITY),
        fingerprintTtlSeconds: opts.fingerprintTtlSeconds,
        skewSeconds: opts.skewSeconds,
        logger,
        audit: opts.audit,
      });
    }
    if (opts.outbound) {
      sidecar.outbound = await startOutbound({ ...opts.outbound, identity: opts.identity, fingerprintTtlSeconds: opts.fingerprintTtlSeconds, logger });
    }
  } catch (err) {
    await sidecar.close();
    throw err;
  }
  return sidecar;
}
