import type { Command } from 'commander';
import type { FastifyPluginAsync } from 'fastify';
import type pino from 'pino';
import type { AdminServer } from '../agent/identity/admin.ts';
import type { IdentityAgent } from '../agent/identity/agent.ts';
import type { XdsService } from '../agent/xds/server.ts';
import type { DecisionAudit } from '../agent/sidecar/audit.ts';
import type { DecisionRecord } from '../agent/sidecar/decision-log.ts';
import type { SubscriberOptions } from '../agent/control/subscriber.ts';

/** What option groups share before the agent has joined the CA. */
export interface PrepareContext {
  log: pino.Logger;
  /** Run in reverse order at shutdown (and when starting fails). */
  closers: (() => Promise<void> | void)[];
}

/** What option groups share once the agent holds an SVID; groups add services, routes and cleanups. */
export interface AgentContext extends PrepareContext {
  agent: IdentityAgent;
  /** Served on the --sds socket (SDS is added by the identity group; ECDS may join). */
  xdsServices: XdsService[];
  /** Registered on the --admin endpoint. */
  adminPlugins: FastifyPluginAsync[];
  admin?: AdminServer;
  /** Set by --audit-dir before the sidecar starts. */
  audit?: DecisionAudit;
  /** Set by --ecds-policy when it serves one policy (or --control relaying to Envoy): the SHA-256 of the build served now (Envoy-mode audit entries name it). */
  servedPolicySha256?: () => string | undefined;
  /** With --control: where filters from the control plane go (set by the sidecar group's setup). */
  controlApply?: SubscriberOptions['apply'];
  /** With --control: settles applies still in flight once the subscriber is stopping (the ECDS relay waits on Envoy). */
  stopControlApply?: () => void;
  /** With --control: where the inbound sidecar's decision records go (set by the control group's start, read per decision). */
  decisions?: (record: DecisionRecord, auditEntry: string | undefined) => void;
}

/**
 * A set of `palisade agent` flags and what they start. The sidecar (and anything else that
 * lives in the agent process) is one more group in `AGENT_OPTION_GROUPS`.
 */
export interface AgentOptionGroup {
  addOptions(command: Command): void;
  /**
   * Before the agent spends its one-time join token: check every flag of the group and read
   * every file it names, so a typo costs nothing. Returns what the group runs once the agent
   * holds an SVID, or nothing when its flags are absent.
   */
  prepare(opts: Record<string, unknown>, ctx: PrepareContext): Promise<AgentPart | void> | AgentPart | void;
}

export interface AgentPart {
  /** Before the xDS and admin servers start: add services and admin routes. */
  setup?(ctx: AgentContext): Promise<void> | void;
  /** After they listen. */
  start?(ctx: AgentContext): Promise<void> | void;
}
