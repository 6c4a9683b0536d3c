import type { Command } from 'commander';
import type { FastifyPluginAsync } from 'fastify';
import type pino from 'pino';
import type { AdminServer } from '../agent/identity/admin.ts';
import type { IdentityAgent } from '../agent/identity/agent.ts';
import type { XdsService } from '../agent/xds/server.ts';
import type { DecisionAudit } from '../agent/sidecar/audit.ts';

/** What option groups share while the agent starts; groups add services, routes and cleanups. */
export interface AgentContext {
  agent: IdentityAgent;
  log: pino.Logger;
  /** Served on the --sds socket (SDS is added by the identity group; ECDS may join). */
  xdsServices: XdsService[];
  /** Registered on the --admin endpoint. */
  adminPlugins: FastifyPluginAsync[];
  admin?: AdminServer;
  /** Set by --audit-dir before the sidecar starts. */
  audit?: DecisionAudit;
  /** Run in reverse order at shutdown. */
  closers: (() => Promise<void> | void)[];
}

/**
 * A set of `palisade agent` flags and what they start. The sidecar (and anything else that
 * lives in the agent process) is one more group in `AGENT_OPTION_GROUPS`.
 */
export interface AgentOptionGroup {
  addOptions(command: Command): void;
  /** Before the xDS and admin servers start: add services and admin routes. */
  setup?(opts: Record<string, unknown>, ctx: AgentContext): Promise<void> | void;
  /** After they listen. */
  start?(opts: Record<string, unknown>, ctx: AgentContext): Promise<void> | void;
}
