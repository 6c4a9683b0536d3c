/**
 * `palisade agent --audit-dir DIR`: the sidecar (--inbound) and Envoy (--sds, through its
 * access-log stream) write one entry per decision to a tamper-evident log (audit/,
 * docs/audit.md), served on the admin API under /v1/audit/.
 */
import { accessSync, constants, mkdirSync } from 'node:fs';
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import type { AgentOptionGroup } from './agent-group.ts';
import { AuditLog, AUDIT_DEFAULTS, type FsyncPolicy } from '../audit/log.ts';
import { DecisionAudit, type AuditFailure } from '../agent/sidecar/audit.ts';
import { registerAuditRoutes } from '../agent/sidecar/audit-admin.ts';

export const auditAgentGroup: AgentOptionGroup = {
  addOptions(command: Command) {
    command
      .option('--audit-dir <dir>', 'write every inbound decision to a signed, verifiable audit log in DIR (palisade audit verify)')
      .option('--audit-failure <mode>', 'when an entry cannot be written: closed (answer 503) or open (forward, count the loss)', 'closed')
      .option('--audit-fsync <policy>', 'checkpoint (fsync before each checkpoint) or batch (before each request goes on)', AUDIT_DEFAULTS.fsync)
      .option('--audit-checkpoint-every <n>', 'sign a checkpoint after this many entries (and at least every second)', String(AUDIT_DEFAULTS.checkpointEvery));
  },
  prepare(opts) {
    if (!opts.auditDir) return;
    if (!opts.inbound && !opts.sds) throw new CliError('--audit-dir records the decisions of the inbound sidecar or of Envoy: it needs --inbound or --sds', 2);
    const failure = opts.auditFailure as AuditFailure;
    if (failure !== 'closed' && failure !== 'open') throw new CliError('--audit-failure must be closed or open', 2);
    const fsync = opts.auditFsync as FsyncPolicy;
    if (fsync !== 'checkpoint' && fsync !== 'batch') throw new CliError('--audit-fsync must be checkpoint or batch', 2);
    const every = Number(opts.auditCheckpointEvery);
    if (!Number.isInteger(every) || every < 1) throw new CliError('--audit-checkpoint-every must be a positive whole number', 2);
    const dir = opts.auditDir as string;
    // Before the join token is spent: a directory the agent cannot write costs nothing.
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      accessSync(dir, constants.W_OK);
    } catch (err) {
      throw new CliError(`cannot write the audit log ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 2);
    }
    return {
      // The log signs checkpoints with the agent's SVID, so it opens once the agent has joined.
      async setup(ctx) {
        let log: AuditLog;
        try {
          log = AuditLog.open({ dir, signer: ctx.agent, fsync, checkpointEvery: every, onWarning: (message, err) => ctx.log.warn({ err: err.message }, message) });
        } catch (err) {
          throw new CliError(`cannot open the audit log ${dir}: ${(err as Error).message}`, 2);
        }
        ctx.audit = new DecisionAudit(log, failure, ctx.log, ctx.agent.metrics);
        if (opts.sds) {
          // Envoy's decisions arrive on the same socket as SDS (palisade envoy bootstrap --audit).
          const { createAccessLogService } = await import('../agent/xds/als.ts');
          ctx.xdsServices.push(createAccessLogService({ log, identity: ctx.agent, policySha256: () => ctx.servedPolicySha256?.(), logger: ctx.log, registry: ctx.agent.metrics }));
        }
        ctx.adminPlugins.push(async (app) => registerAuditRoutes(app, log));
        ctx.closers.push(() => log.close());
        ctx.log.info({ dir, origin: log.origin, entries: log.tree.size, failure, fsync }, 'audit log open');
      },
    };
  },
};
