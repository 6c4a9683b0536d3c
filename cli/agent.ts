import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import pino from 'pino';
import { createAdmin } from '../agent/identity/admin.ts';
import { startAgent, type IdentityAgent } from '../agent/identity/agent.ts';
import { createSdsService } from '../agent/xds/sds.ts';
import { createXdsServer } from '../agent/xds/server.ts';
import { parseListen, untilSignal } from './process.ts';
import { CliError } from './errors.ts';
import { ecdsAgentGroup } from './envoy.ts';
import { sidecarAgentGroup } from './agent-sidecar.ts';
import { signerAgentGroup } from './agent-signer.ts';
import { auditAgentGroup } from './agent-audit.ts';
import type { AgentContext, AgentOptionGroup } from './agent-group.ts';


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
  setup(opts, ctx) {
    if (opts.sds) ctx.xdsServices.push(createSdsService(ctx.agent, { registry: ctx.agent.metrics, log: (msg) => ctx.log.warn(msg) }));
  },
};

/** Flag groups of `palisade agent`, in order. */
export const AGENT_OPTION_GROUPS: AgentOptionGroup[] = [identityGroup, ecdsAgentGroup, auditAgentGroup, sidecarAgentGroup, signerAgentGroup];

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
