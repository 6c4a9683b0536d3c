/**
 * What each agent instance told the control plane about itself with its last decision batch:
 * its SVID (serial and validity read from the client certificate it presented, never from
 * the body), its renewal state and the policy version it runs. In memory and bounded: at
 * most MAX_INSTANCES per service; the longest silent one makes room.
 */
import type { X509Certificate } from 'node:crypto';
import type { DecisionBatch } from '../agent/control/decisions.ts';
import type { Checkpoint } from '../audit/checkpoint.ts';
import { NO_AUDIT, type AuditState, type AuditStatus, type CheckpointVerifier } from './audit-status.ts';

export interface InstanceStatus {
  instance: string;
  svid: { serial: string; not_before: string; not_after: string; expires_soon: boolean };
  renewal: DecisionBatch['renewal'];
  policy: DecisionBatch['policy'];
  /** Decisions the agent had to drop (its queue was full while the control plane was away). */
  dropped: number;
  last_seen: string;
  /** Its audit log's latest checkpoint, as verified here (audit-status.ts). */
  audit: AuditStatus;
  /** The SVID is past three quarters of its lifetime, or its renewal failed. */
  warning: string | null;
}

const MAX_INSTANCES = 100;

export class Instances {
  readonly #byService = new Map<string, Map<string, { batch: DecisionBatch; cert: X509Certificate; seen: number; audit: AuditState }>>();

  constructor(readonly maxServices: number, private readonly verifier: CheckpointVerifier, private readonly now: () => number = Date.now) {}

  seen(service: string, instance: string, cert: X509Certificate, batch: DecisionBatch): void {
    let instances = this.#byService.get(service);
    if (!instances) {
      if (this.#byService.size >= this.maxServices) return;
      this.#byService.set(service, (instances = new Map()));
    }
    const audit = this.verifier.check(instances.get(instance)?.audit ?? NO_AUDIT, service, batch.audit);
    instances.delete(instance); // re-inserted last: Map order is then least recently seen first
    if (instances.size >= MAX_INSTANCES) instances.delete(instances.keys().next().value!);
    instances.set(instance, { batch, cert, seen: this.now(), audit });
  }

  /** The instance's latest verified checkpoint; null when none verified or its log once failed verification. */
  checkpoint(service: string, instance: string): Checkpoint | null {
    const audit = this.#byService.get(service)?.get(instance)?.audit;
    return audit?.status.result === 'verified' ? audit.good : null;
  }

  /** Every service an agent reported for, policy or not. */
  services(): string[] {
    return [...this.#byService.keys()];
  }

  of(service: string): InstanceStatus[] {
    const now = this.now();
    return [...(this.#byService.get(service)?.entries() ?? [])].map(([instance, { batch, cert, seen, audit }]) => {
      const notBefore = Date.parse(cert.validFrom), notAfter = Date.parse(cert.validTo);
      const expiresSoon = notAfter - now < (notAfter - notBefore) / 4;
      const warning = batch.renewal.status === 'failed'
        ? `renewal failed ${batch.renewal.consecutive_failures} time(s)${batch.renewal.last_error ? `: ${batch.renewal.last_error}` : ''}`
        : expiresSoon ? 'under a quarter of its lifetime left' : null;
      return {
        instance,
        // Written as the CA and the agent write serials: lowercase hex, no leading zeros.
        svid: { serial: BigInt(`0x${cert.serialNumber}`).toString(16), not_before: new Date(notBefore).toISOString(), not_after: new Date(notAfter).toISOString(), expires_soon: expiresSoon },
        renewal: batch.renewal,
        policy: batch.policy,
        dropped: batch.dropped,
        last_seen: new Date(seen).toISOString(),
        audit: audit.status,
        warning,
      };
    });
  }
}
