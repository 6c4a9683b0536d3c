/**
 * The sidecar's side of the audit log (audit/): one entry per decision, written before an
 * allowed request is forwarded. When the entry cannot be written, `closed` (the default)
 * refuses the request with 503 and `open` forwards it anyway; either way the loss is
 * counted (`palisade_audit_entries_total{result="refused"|"lost"}`) and logged.
 */
import type { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, register as defaultRegistry, type Registry } from '../metrics.ts';
import { AuditLog, AuditWriteError, type CertificateRef, type WrittenEntry } from '../../audit/log.ts';
import { redactPath, type Decided } from '../../audit/entry.ts';
import { tokenHash } from '../../spiffe/fingerprint.ts';
import { isoTime } from '../../platform/utc-time.ts';
import type { DecisionRecord } from './decision-log.ts';
import type { IdentityContext } from './identity-context.ts';

export type AuditFailure = 'closed' | 'open';

/** What the sidecar verified about a request, kept as evidence beside the decision. */
export interface Evidence {
  callerCert?: X509Certificate;
  user?: IdentityContext;
  /** The fingerprint JWS, once it verified, and the claims it verified with. */
  fingerprint?: string;
  fingerprintClaims?: { iat: number; exp: number; jti: string };
  policySha256?: string;
}

export class DecisionAudit {
  readonly #counter: Counter<'result'>;

  constructor(
    readonly log: AuditLog,
    private readonly failure: AuditFailure,
    private readonly logger: Logger,
    registry: Registry = defaultRegistry,
  ) {
    const name = 'palisade_audit_entries_total';
    this.#counter =
      (registry.getSingleMetric(name) as Counter<'result'> | undefined) ??
      new Counter({ name, help: 'Audit entries by result: written, refused (not written, request refused), lost (not written, request forwarded)', labelNames: ['result'], registers: [registry] });
  }

  /** Writes the entry; `proceed` when the request may go on (written, or `open`), `written` the entry when it was. */
  async record(record: DecisionRecord, evidence: Evidence): Promise<{ proceed: boolean; written?: WrittenEntry }> {
    try {
      const cert = evidence.callerCert && certificateRef(evidence.callerCert);
      const written = await this.log.append(entryOf(record, evidence, cert), cert);
      this.#counter.inc({ result: 'written' });
      return { proceed: true, written };
    } catch (err) {
      if (!(err instanceof AuditWriteError)) throw err;
      const open = this.failure === 'open';
      this.#counter.inc({ result: open ? 'lost' : 'refused' });
      this.logger.error(
        { err: err.message, request_id: record.request_id, audit_failure: this.failure },
        open ? 'audit entry lost; request forwarded (--audit-failure open)' : 'audit entry not written; request refused',
      );
      return { proceed: open };
    }
  }
}

/** Per certificate object (one per connection): its DER, hash and serial, worked out once. */
const refs = new WeakMap<X509Certificate, CertificateRef & { serial: string }>();
function certificateRef(cert: X509Certificate): CertificateRef & { serial: string } {
  let ref = refs.get(cert);
  if (!ref) {
    const der = cert.raw;
    refs.set(cert, (ref = { der, id: AuditLog.certificateId(der), serial: cert.serialNumber }));
  }
  return ref;
}

function entryOf(record: DecisionRecord, evidence: Evidence, cert: (CertificateRef & { serial: string }) | undefined): Decided {
  return {
    time: isoTime(Date.now()),
    trace_id: record.trace_id,
    request_id: record.request_id,
    service: record.target,
    caller: record.caller && cert ? { id: record.caller, serial: cert.serial, cert: cert.id } : null,
    user: evidence.user ? { claims: evidence.user.claims as Record<string, unknown>, token_sha256: tokenHash(evidence.user.token) } : null,
    method: record.method,
    path: redactPath(record.path),
    decision: record.decision,
    status: record.status,
    rule: record.rule,
    mode: record.mode,
    reason: record.reason,
    policy: evidence.policySha256 ? { sha256: evidence.policySha256 } : null,
    fingerprint: evidence.fingerprint ?? null,
    fingerprintClaims: evidence.fingerprintClaims,
  };
}
