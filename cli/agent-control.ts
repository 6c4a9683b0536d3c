/**
 * `palisade agent --control URL`: the filter comes from the control plane (docs/control.md)
 * instead of files. The agent subscribes with its SVID once it has joined, hands every
 * verified filter to the embedded sidecar (the first one starts it) or, without --inbound,
 * relays it to Envoy over ECDS, and reports each version; it pushes the sidecar's decisions,
 * its SVID state and audit checkpoints for the Security Pane.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AgentContext, AgentOptionGroup, PrepareContext } from './agent-group.ts';
import { ecdsService } from './agent-ecds.ts';
import { CliError } from './errors.ts';

export const controlAgentGroup: AgentOptionGroup = {
  addOptions(command) {
    command
      .option('--control <url...>', 'control plane replicas (https://HOST:PORT, repeatable or comma-separated): the sidecar\'s (or, with --sds and no --inbound, Envoy\'s over ECDS) filter comes from there; replaces --filter and --ecds-policy')
      .option('--control-id <spiffe-id>', 'the SPIFFE ID the control plane must present (default spiffe://<trust domain>/palisade/control)');
  },
  async prepare(opts, ctx) {
    const urls = ((opts.control as string[] | undefined) ?? []).flatMap((u) => u.split(',')).map((u) => u.trim()).filter(Boolean);
    if (urls.length === 0) {
      if (opts.controlId) throw new CliError('--control-id needs --control URL', 2);
      return;
    }
    if (opts.filter || opts.ecdsPolicy) throw new CliError('--control and --filter/--ecds-policy exclude each other: with --control the control plane sends the filter', 2);
    if (!opts.inbound && !opts.sds) throw new CliError('--control feeds the embedded sidecar (--inbound HOST:PORT --app URL) or Envoy over ECDS (--sds unix:PATH): add one', 2);
    for (const url of urls) {
      if (!/^https:\/\/[^/]+\/?$/.test(url)) throw new CliError(`--control ${url}: expected https://HOST:PORT`, 2);
    }
    const controlId = opts.controlId as string | undefined;
    if (controlId !== undefined && !/^spiffe:\/\/[^/]+\/.+/.test(controlId)) throw new CliError('--control-id must be a SPIFFE ID: spiffe://trust-domain/path', 2);
    // Without --inbound, Envoy runs the filter: it is relayed over ECDS and Envoy's answer is the report.
    const relay = opts.inbound ? undefined : await ecdsRelay(ctx);
    return {
      setup(ctx) {
        relay?.(ctx);
      },
      // After every group's setup: the sidecar's (or the relay's) has said where filters go.
      async start(ctx) {
        const [{ ControlSubscriber }, { subscriberPusher }] = await Promise.all([import('../agent/control/subscriber.ts'), import('../agent/control/decisions.ts')]);
        const subscriber = new ControlSubscriber({ urls, controlId, identity: ctx.agent, apply: ctx.controlApply!, log: ctx.log });
        // The Security Pane's feed: the sidecar's decisions, the SVID's state, the audit log's checkpoints.
        const pusher = subscriberPusher(ctx.agent, subscriber, ctx.audit?.log);
        ctx.decisions = (record, entry) => pusher.add(record, entry);
        // The subscriber stops first, so a relayed version still waiting for Envoy is not reported refused.
        ctx.closers.push(async () => {
          const closing = subscriber.close();
          ctx.stopControlApply?.();
          await closing;
        }, () => pusher.close());
        subscriber.on('connected', (url) => ctx.log.info({ control: url }, 'subscribed to the control plane'));
        subscriber.on('reported', (r) => ctx.log.info(r, `filter ${r.status}`));
        subscriber.start();
      },
    };
  },
};

/**
 * Envoy mode: an ECDS server on the --sds socket fed by the control plane. The pinned copies
 * Envoy loads go to a new directory (readable by Envoy's user, writable by the agent only),
 * removed at exit.
 */
async function ecdsRelay(prepare: PrepareContext) {
  const { EcdsRelay } = await import('../agent/control/ecds-relay.ts');
  const codeDir = mkdtempSync(path.join(tmpdir(), 'palisade-ecds-'));
  chmodSync(codeDir, 0o755);
  prepare.closers.push(() => rmSync(codeDir, { recursive: true, force: true }));
  const relay = new EcdsRelay(codeDir);
  const { ecds, serve } = await ecdsService(prepare.log, prepare.closers, { onAck: relay.acked, onNack: relay.nacked });
  relay.attach(ecds);
  return (ctx: AgentContext) => {
    serve(ctx);
    ctx.controlApply = relay.apply;
    ctx.stopControlApply = () => relay.close();
    ctx.servedPolicySha256 = () => relay.enforced?.sha256;
  };
}
