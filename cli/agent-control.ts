/**
 * `palisade agent --control URL`: the filter comes from the control plane (docs/control.md)
 * instead of files. The agent subscribes with its SVID once it has joined, hands every
 * verified filter to the embedded sidecar (the first one starts it) and reports each version,
 * and pushes the sidecar's decisions, its SVID state and audit checkpoints for the Security Pane.
 */
import type { AgentOptionGroup } from './agent-group.ts';
import { CliError } from './errors.ts';

export const controlAgentGroup: AgentOptionGroup = {
  addOptions(command) {
    command
      .option('--control <url...>', 'control plane replicas (https://HOST:PORT, repeatable or comma-separated): the sidecar\'s filter comes from there; replaces --filter and --ecds-policy')
      .option('--control-id <spiffe-id>', 'the SPIFFE ID the control plane must present (default spiffe://<trust domain>/palisade/control)');
  },
  prepare(opts) {
    const urls = ((opts.control as string[] | undefined) ?? []).flatMap((u) => u.split(',')).map((u) => u.trim()).filter(Boolean);
    if (urls.length === 0) {
      if (opts.controlId) throw new CliError('--control-id needs --control URL', 2);
      return;
    }
    if (opts.filter || opts.ecdsPolicy) throw new CliError('--control and --filter/--ecds-policy exclude each other: with --control the control plane sends the filter', 2);
    if (!opts.inbound) throw new CliError('--control feeds the embedded sidecar: add --inbound HOST:PORT and --app URL', 2);
    for (const url of urls) {
      if (!/^https:\/\/[^/]+\/?$/.test(url)) throw new CliError(`--control ${url}: expected https://HOST:PORT`, 2);
    }
    const controlId = opts.controlId as string | undefined;
    if (controlId !== undefined && !/^spiffe:\/\/[^/]+\/.+/.test(controlId)) throw new CliError('--control-id must be a SPIFFE ID: spiffe://trust-domain/path', 2);
    return {
      // After every group's setup: the sidecar's has said where filters go.
      async start(ctx) {
        const [{ ControlSubscriber }, { subscriberPusher }] = await Promise.all([import('../agent/control/subscriber.ts'), import('../agent/control/decisions.ts')]);
        const subscriber = new ControlSubscriber({ urls, controlId, identity: ctx.agent, apply: ctx.controlApply!, log: ctx.log });
        // The Security Pane's feed: the sidecar's decisions, the SVID's state, the audit log's checkpoints.
        const pusher = subscriberPusher(ctx.agent, subscriber, ctx.audit?.log);
        ctx.decisions = (record, entry) => pusher.add(record, entry);
        ctx.closers.push(() => subscriber.close(), () => pusher.close());
        subscriber.on('connected', (url) => ctx.log.info({ control: url }, 'subscribed to the control plane'));
        subscriber.on('reported', (r) => ctx.log.info(r, `filter ${r.status}`));
        subscriber.start();
      },
    };
  },
};
