import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { FastifyPluginAsync } from 'fastify';
import pino from 'pino';
import { createAdmin, type AdminServer } from '../agent/identity/admin.ts';
import { startAgent, type IdentityAgent } from '../agent/identity/agent.ts';
import type { XdsService } from '../agent/xds/server.ts';
import { parseListen, untilSignal } from './ca.ts';
import { CliError } from './errors.ts';
import { ecdsAgentGroup } from './envoy.ts';
import { sidecarAgentGroup } from '../agent/sidecar/agent-options.ts';
import { signerAgentGroup } from '../agent/sidecar/sign-options.ts';

/** What option groups share while the agent starts; groups add services, routes and cleanups. */
export interface AgentContext {
  agent: IdentityAgent;
  log: pino.Logger;
  /** Served on the --sds socket (SDS is added by the identity group; ECDS may join). */
  xdsServices: XdsService[];
  /** Registered on the --admin endpoint. */
  adminPlugins: FastifyPluginAsync[];
  admin?: AdminServer;
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

const identityGroup: AgentOptionGroup = {
  addOptions(command) {
    command
      .requiredOption('--ca-url <url>', 'CA address, e.g. https://127.0.0.1:8443')
      .requiredOption('--bundle <file>', 'trust bundle (PEM) that verifies the CA, e.g. the CA dir bundle.pem')
      .option('--token <token>', 'one-time join token (or env PALISADE_JOIN_TOKEN)')
      .option('--join-attempts <n>', 'attempts to reach the CA at startup before giving up', '5')
      .option('--sds <unix:path>', "serve SDS (secrets 'default' and 'ROOTCA') to Envoy on this Unix socket")
      .option('--admin <host:port>', 'admin endpoint on loopback: /healthz, /metrics, /v1/svid');
  },
  // gRPC and Envoy's protos load only for an agent that serves Envoy (--sds).
  async setup(opts, ctx) {
    if (!opts.sds) return;
    const { createSdsService } = await import('../agent/xds/sds.ts');
    ctx.xdsServices.push(createSdsService(ctx.agent, { registry: ctx.agent.metrics, log: (msg) => ctx.log.warn(msg) }));
  },
};

/** Flag groups of `palisade agent`, in order. */
export const AGENT_OPTION_GROUPS: AgentOptionGroup[] = [identityGroup, ecdsAgentGroup, sidecarAgentGroup, signerAgentGroup];

export function register(program: Command): void {
  const command = program
    .command('agent')
    .description('node agent: joins the CA, keeps the SVID in memory, rotates it, serves it to Envoy over SDS');
  for (const group of AGENT_OPTION_GROUPS) group.addOptions(command);
  command.action((opts: Record<string, unknown>) => runAgent(opts));
}

async function runAgent(opts: Record<string, unknown>): Promise<void> {
  const log = pino({ base: { component: 'palisade-agent' } });
  const token = (opts.token as string | undefined) ?? process.env.PALISADE_JOIN_TOKEN;
  if (!token) throw new CliError('a join token is required: --token TOKEN or PALISADE_JOIN_TOKEN', 2);
  let bundlePem: string;
  try {
    bundlePem = readFileSync(opts.bundle as string, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read trust bundle ${opts.bundle}: ${(err as Error).message}`, 2);
  }
  const bootstrapAttempts = Number(opts.joinAttempts);
  if (!Number.isInteger(bootstrapAttempts) || bootstrapAttempts < 1) throw new CliError('--join-attempts must be a positive integer', 2);
  let agent: IdentityAgent;
  try {
    agent = await startAgent({ caUrl: opts.caUrl as string, bundlePem, token, bootstrapAttempts });
  } catch (err) {
    throw new CliError(`cannot obtain an SVID: ${(err as Error).message}`);
  }
  const ctx: AgentContext = { agent, log, xdsServices: [], adminPlugins: [], closers: [() => agent.close()] };
  try {
    agent.on('rotated', (svid) => log.info({ spiffe_id: svid.spiffeId, serial: svid.serial, not_after: svid.notAfter }, 'SVID rotated'));
    agent.on('renewal_failed', (err) => log.warn({ err: err.message, health: agent.health().status }, 'SVID renewal failed'));
    agent.on('expired', () => log.error('SVID expired; a new join token is needed'));
    for (const group of AGENT_OPTION_GROUPS) await group.setup?.(opts, ctx);
    if (opts.sds) {
      const { createXdsServer } = await import('../agent/xds/server.ts');
      const xds = createXdsServer(opts.sds as string, ctx.xdsServices);
      await xds.start();
      ctx.closers.push(() => xds.close());
    }
    if (opts.admin) {
      const { host, port } = parseListen(opts.admin as string);
      ctx.admin = await createAdmin({ agent, host, port, plugins: ctx.adminPlugins });
      const { url } = await ctx.admin.listen();
      ctx.closers.push(() => ctx.admin!.close());
      log.info({ url }, 'admin endpoint listening');
    }
    for (const group of AGENT_OPTION_GROUPS) await group.start?.(opts, ctx);
    const svid = agent.svid();
    log.info({ spiffe_id: svid.spiffeId, serial: svid.serial, not_after: svid.notAfter, sds: opts.sds ?? null }, 'agent ready');
    await untilSignal();
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError((err as Error).message);
  } finally {
    for (const close of ctx.closers.reverse()) await close();
  }
}
