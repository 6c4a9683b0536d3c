/** A synthetic load for the pane's bounds (bench/dashboard.ts, test/dashboard/window.test.ts): `services` services, each called by its neighbour, a denial in every 7th decision and a dry-run one in every 11th. */
import type { DecisionWindow } from './window.ts';

export const serviceId = (i: number) => `spiffe://bank.example/ns/load/sa/svc-${i}`;

export function feed(window: DecisionWindow, services: number, decisions: number): void {
  for (let n = 0; n < decisions; n++) {
    const target = n % services;
    const denied = n % 7 === 0, dryRun = !denied && n % 11 === 0;
    window.add({
      trace_id: n.toString(16).padStart(32, '0'), request_id: `r${n}`, caller: serviceId((target + 1) % services), target: serviceId(target),
      instance: 'i1', method: 'GET', path: `/items/${n}`, decision: denied || dryRun ? 'deny' : 'allow', rule: denied ? 'no-writes' : 'read-items',
      mode: dryRun ? 'dry-run' : 'enforce', status: denied ? 403 : 200, reason: denied || dryRun ? 'deny_rule' : 'allow_rule',
      user: null, client_id: null, fingerprint: 'verified', audit_index: null, policy: null, audit_inclusion: null,
    });
  }
}
