import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import pino from 'pino';
import { isLoopbackHost } from '../agent/identity/loopback.ts';
import { writeSecretFile } from '../platform/secret-file.ts';
import { isoTime } from '../platform/utc-time.ts';
import { startAgent, type IdentityAgent } from '../agent/identity/agent.ts';
import { parseListen, untilSignal } from './process.ts';
import type { AgentContext, AgentOptionGroup, AgentPart, PrepareContext } from './agent-group.ts';
import { CliError } from './errors.ts';
import { settleDaemonHeap } from './daemon-heap.ts';
import { ecdsAgentGroup } from './agent-ecds.ts';
import { sidecarAgentGroup } from './agent-sidecar.ts';
import { signerAgentGroup } from './agent-signer.ts';
import { auditAgentGroup } from './agent-audit.ts';
import { edgeAgentGroup } from './agent-edge.ts';
import { controlAgentGroup } from './agent-control.ts';

const identityGroup: AgentOptionGroup = {
  addOptions(command) {
    command
      .requiredOption('--ca-url <url>', 'CA address, e.g. https://127.0.0.1:8443')
      .requiredOption('--bundle <file>', 'trust bundle (PEM) that verifies the CA, e.g. the CA dir bundle.pem')
      .option('--token <token>', 'one-time join token (or env PALISADE_JOIN_TOKEN)')
      .option('--join-attempts <n>', 'attempts to reach the CA at startup before giving up', '5')
      .option('--sds <unix:path>', "serve SDS (secrets 'default' and 'ROOTCA') to Envoy on this Unix socket")
      .option('--admin <host:port>', 'admin endpoint on loopback: /healthz, /metrics, /v1/svid')
      .option('--admin-token-file <file>', 'where the admin token (needed by PUT/POST admin routes) is written, mode 0600, at every start (default: a new private directory under the temp dir, logged)');
  },
  prepare(opts) {
    const admin = opts.admin ? parseListen(opts.admin as string) : undefined;
    if (admin && !isLoopbackHost(admin.host)) throw new CliError(`--admin must be a loopback address (127.0.0.1, ::1 or localhost), not ${admin.host}`, 2);
    if (opts.adminTokenFile && !admin) throw new CliError('--admin-token-file needs --admin HOST:PORT', 2);
    return {
      // gRPC and Envoy's protos load only for an agent that serves Envoy (--sds).
      async setup(ctx) {
        if (!opts.sds) return;
        const { createSdsService } = await import('../agent/xds/sds.ts');
        ctx.xdsServices.push(createSdsService(ctx.agent, { registry: ctx.agent.metrics, log: (msg) => ctx.log.warn(msg) }));
      },
    };
  },
};

/** Flag groups of `palisade agent`, in order. */
export const AGENT_OPTION_GROUPS: AgentOptionGroup[] = [identityGroup, ecdsAgentGroup, auditAgentGroup, sidecarAgentGroup, signerAgentGroup, edgeAgentGroup, controlAgentGroup];

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
  const closers: PrepareContext['closers'] = [];
  try {
    // fastify loads only for an agent that serves --admin, and before the filters compile
    // (the option groups' prepare): loaded after them, it kept ~3 MB more of malloc's arena.
    const { createAdmin } = opts.admin ? await import('../agent/identity/admin.ts') : { createAdmin: undefined };
    const parts: AgentPart[] = [];
    for (const group of AGENT_OPTION_GROUPS) {
      const part = await group.prepare(opts, { log, closers });
      if (part) parts.push(part);
    }
    const admin = opts.admin ? { ...parseListen(opts.admin as string), ...adminToken(opts.adminTokenFile as string | undefined, closers) } : undefined;
    let agent: IdentityAgent;
    try {
      agent = await startAgent({ caUrl: opts.caUrl as string, bundlePem, token, bootstrapAttempts });
    } catch (err) {
      throw new CliError(`cannot obtain an SVID: ${(err as Error).message}`);
    }
    closers.push(() => agent.close());
    const ctx: AgentContext = { agent, log, xdsServices: [], adminPlugins: [], closers };
    agent.on('rotated', (svid) => log.info({ spiffe_id: svid.spiffeId, serial: svid.serial, not_after: isoTime(svid.notAfter) }, 'SVID rotated'));
    agent.on('renewal_failed', (err) => log.warn({ err: err.message, health: agent.health().status }, 'SVID renewal failed'));
    agent.on('expired', () => log.error('SVID expired; a new join token is needed'));
    for (const part of parts) await part.setup?.(ctx);
    if (opts.sds) {
      const { createXdsServer } = await import('../agent/xds/server.ts');
      const xds = createXdsServer(opts.sds as string, ctx.xdsServices);
      await xds.start();
      closers.push(() => xds.close());
    }
    if (admin && createAdmin) {
      const server = (ctx.admin = await createAdmin({ agent, host: admin.host, port: admin.port, token: admin.token, plugins: ctx.adminPlugins }));
      const { url } = await server.listen();
      closers.push(() => server.close());
      log.info({ url, token_file: admin.tokenFile }, 'admin endpoint listening');
    }
    for (const part of parts) await part.start?.(ctx);
    const svid = agent.svid();
    log.info({ spiffe_id: svid.spiffeId, serial: svid.serial, not_after: isoTime(svid.notAfter), sds: opts.sds ?? null }, 'agent ready');
    settleDaemonHeap();
    await untilSignal();
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError((err as Error).message);
  } finally {
    for (const close of closers.reverse()) await close();
  }
}

/**
 * A new admin token for this run, written where the operator (same user) can read it and
 * nobody else can: the given file (replaced safely, 0600), or a new private directory
 * removed at exit.
 */
function adminToken(file: string | undefined, closers: PrepareContext['closers']): { token: string; tokenFile: string } {
  const token = randomBytes(32).toString('base64url');
  if (!file) {
    const dir = mkdtempSync(path.join(tmpdir(), 'palisade-admin-'));
    closers.push(() => rmSync(dir, { recursive: true, force: true }));
    file = path.join(dir, 'token');
  }
  try {
    writeSecretFile(file, `${token}\n`, { replace: true });
  } catch (err) {
    throw new CliError(`cannot write the admin token: ${(err as Error).message}`, 2);
  }
  return { token, tokenFile: file };
}
