/**
 * What each agent runs: the reports agents send after every version they apply or refuse.
 * A refusal leaves the agent on what it ran before, and the rollout says both.
 */
import type { Store } from '../store/store.ts';
import type { Report } from '../agent/control/protocol.ts';
import { ControlError } from './errors.ts';

export interface AgentRollout {
  spiffe_id: string;
  instance: string;
  /** What the agent runs now. */
  version: number | null;
  sha256: string | null;
  /** The last version it reported on, and how. */
  last_report: { version: number; sha256: string; status: Report['status']; reason: string | null };
  reported_at: string;
}

type ReportRow = {
  spiffe_id: string;
  instance: string;
  version: number | string;
  sha256: string;
  status: Report['status'];
  reason: string | null;
  running_version: number | string | null;
  running_sha256: string | null;
  reported_at: number | string;
};

const REPORT_STATUSES = new Set(['applied', 'refused']);
const SHA256 = /^[0-9a-f]{64}$/;

export function parseReport(body: unknown): Report {
  const r = body as Partial<Report> | null;
  const ok = typeof r === 'object' && r !== null && typeof r.policy === 'string' && Number.isInteger(r.version) && typeof r.sha256 === 'string' &&
    SHA256.test(r.sha256) && REPORT_STATUSES.has(r.status as string) && (r.reason === undefined || typeof r.reason === 'string');
  if (!ok) throw new ControlError(400, 'bad_request', 'a report is { "policy", "version", "sha256", "status": "applied" | "refused", "reason"? }');
  return { policy: r.policy!, version: r.version!, sha256: r.sha256!, status: r.status!, ...(r.reason !== undefined && { reason: r.reason.slice(0, 1000) }) };
}

export class Rollout {
  constructor(private readonly store: Store, private readonly now: () => number = Date.now) {}

  /** Records a report; an applied version becomes what the agent runs, a refused one does not. */
  async report(spiffeId: string, instance: string, report: Report): Promise<void> {
    const applied = report.status === 'applied';
    await this.store.run(
      `INSERT INTO control_reports (spiffe_id, instance, policy, version, sha256, status, reason, running_version, running_sha256, reported_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (spiffe_id, instance, policy) DO UPDATE SET
         version = excluded.version, sha256 = excluded.sha256, status = excluded.status, reason = excluded.reason,
         running_version = ${applied ? 'excluded.running_version' : 'control_reports.running_version'},
         running_sha256 = ${applied ? 'excluded.running_sha256' : 'control_reports.running_sha256'},
         reported_at = excluded.reported_at`,
      [spiffeId, instance, report.policy, report.version, report.sha256, report.status, report.reason ?? null,
        applied ? report.version : null, applied ? report.sha256 : null, this.now()],
    );
  }

  async of(policy: string): Promise<AgentRollout[]> {
    const rows = await this.store.query<ReportRow>(
      'SELECT * FROM control_reports WHERE policy = $1 ORDER BY spiffe_id, instance', [policy],
    );
    return rows.map((row) => ({
      spiffe_id: row.spiffe_id,
      instance: row.instance,
      version: row.running_version === null ? null : Number(row.running_version),
      sha256: row.running_sha256,
      last_report: { version: Number(row.version), sha256: row.sha256, status: row.status, reason: row.reason },
      reported_at: new Date(Number(row.reported_at)).toISOString(),
    }));
  }
}
