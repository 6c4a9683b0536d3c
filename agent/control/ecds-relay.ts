/**
 * Envoy mode of `--control`: every verified filter from the control plane is published on the
 * agent's ECDS server as `palisade.policy.<policy>` (the resource `palisade envoy bootstrap`
 * names), and its outcome is Envoy's answer to that version: applied once an Envoy ACKs it,
 * refused with Envoy's error_detail once one NACKs it. Until an Envoy answers, the version
 * stays pending on the control plane (no report is sent): an agent without a connected Envoy
 * never claims a filter is enforced.
 */
import type { EcdsServer, NackReport, PublishedPolicy } from '../xds/ecds.ts';
import type { ApplyOutcome, VerifiedFilter } from './subscriber.ts';

interface Waiter {
  policy: PublishedPolicy;
  settle(outcome: ApplyOutcome): void;
}

export class EcdsRelay {
  #ecds: EcdsServer | undefined;
  #waiters = new Set<Waiter>();
  /** The resource the control plane's filter is published as (one policy per service). */
  #resource: string | undefined;

  /** `codeDir`: where the pinned copies Envoy loads are written (Envoy must be able to read it). */
  constructor(private readonly codeDir: string) {}

  /** The server this relay publishes on; its onAck/onNack hooks must call `acked`/`nacked`. */
  attach(ecds: EcdsServer): void {
    this.#ecds = ecds;
  }

  /** The build Envoy last acknowledged, not one it may still refuse (the audit's Envoy mode names its sha256). */
  get enforced(): PublishedPolicy | undefined {
    return this.#resource === undefined ? undefined : this.#ecds?.acknowledged(this.#resource);
  }

  /** A `SubscriberOptions.apply`: resolves with Envoy's answer to the published version. */
  readonly apply = (filter: VerifiedFilter): Promise<ApplyOutcome> => {
    if (!this.#ecds) return Promise.resolve({ ok: false, reason: 'the ECDS server is not running' });
    const policy = this.#ecds.publishFilter(filter.policy, Buffer.from(filter.wasm), this.codeDir);
    this.#resource = policy.resource;
    return new Promise((resolve) => {
      const waiter: Waiter = { policy, settle: (outcome) => (this.#waiters.delete(waiter), resolve(outcome)) };
      this.#waiters.add(waiter);
    });
  };

  /** An EcdsHooks.onAck. */
  readonly acked = (version: string, resources: string[]): void => {
    for (const w of this.#answered(version, resources)) w.settle({ ok: true });
  };

  /** An EcdsHooks.onNack. */
  readonly nacked = (report: NackReport): void => {
    for (const w of this.#answered(report.rejectedVersion, report.resource)) {
      w.settle({ ok: false, reason: `envoy_nack: ${report.message || 'Envoy rejected the filter without a detail'}` });
    }
  };

  /** Settles what is still waiting (at shutdown): refused, nothing answered it. */
  close(): void {
    for (const w of [...this.#waiters]) w.settle({ ok: false, reason: 'the agent stopped before Envoy answered' });
  }

  /** Waiters whose version is part of the answered response (a response joins its resources' versions with '+'). */
  #answered(version: string, resources: string[]): Waiter[] {
    const versions = version.split('+');
    return [...this.#waiters].filter((w) => resources.includes(w.policy.resource) && versions.includes(w.policy.version));
  }
}
