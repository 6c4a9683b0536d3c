/**
 * The Security Pane's part of `palisade demo`: each inbound agent pushes its decisions, SVID
 * state and audit checkpoints to the control plane (as `palisade agent --control` does), and
 * `--keep` prints the pane's URL with a viewer token.
 */
import { randomUUID } from 'node:crypto';
import type { Store } from '../store/store.ts';
import type { PluginContext } from '../control/server.ts';
import { createToken } from '../control/tokens.ts';
import { dashboard } from '../dashboard/routes.ts';
import { DecisionPusher, subscriberPusher } from '../agent/control/decisions.ts';
import type { ControlSubscriber } from '../agent/control/subscriber.ts';
import type { IdentityAgent } from '../agent/identity/agent.ts';
import type { DecisionRecord } from '../agent/sidecar/decision-log.ts';
import type { AuditLog } from '../audit/log.ts';

export class DemoDashboard {
  readonly #pushers = new Map<string, DecisionPusher>();
  #store: Store | undefined;

  /** The control plane plugin serving the pane. */
  plugin = (context: PluginContext) => {
    this.#store = context.store;
    return dashboard(context);
  };

  /**
   * `agent`'s inbound decisions and its SVID state go to the control plane: as `palisade agent
   * --control` pushes them for an agent streaming from it; an agent without an inbound side
   * (no stream) pushes its SVID state to `url`.
   */
  attach(url: string, agent: IdentityAgent, subscriber?: ControlSubscriber, log?: AuditLog): void {
    this.#pushers.set(agent.svid().spiffeId, subscriber
      ? subscriberPusher(agent, subscriber, log)
      : new DecisionPusher({ url: () => url, identity: agent, instance: randomUUID(), running: () => undefined }));
  }

  /** A decision record of the demo's inbound sidecars (their `onDecision`), handed to the agent of the service it was made at. */
  record(decision: DecisionRecord, auditEntry: string | undefined): void {
    this.#pushers.get(decision.target)?.add(decision, auditEntry);
  }

  /** A new read-only token for the pane (printed once, as `palisade control token create` does). */
  async viewerToken(): Promise<string> {
    return (await createToken(this.#store!, 'viewer', 'dashboard')).token;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pushers.values()].map((p) => p.close()));
  }
}
