/**
 * The decision line: every request a policy filter decides is logged once, at level info,
 * as `palisade.decision {json}` (DEVELOPERS.md, filter ↔ host contract). `palisade test`,
 * the sidecar's decision log and anything else that needs the outcome read it here.
 */
import type { Outcome } from '../host/filter.ts';

/** The decision record a policy filter logs for every request. */
export interface Decision {
  decision: string;
  status: number;
  rule: string | null;
  mode: string;
  reason: string;
}

export const DECISION_PREFIX = 'palisade.decision ';

export function decisionOf(outcome: Pick<Outcome, 'logs'>): Decision | null {
  const line = outcome.logs.find((l) => l.level === 'info' && l.message.startsWith(DECISION_PREFIX));
  if (!line) return null;
  try {
    return JSON.parse(line.message.slice(DECISION_PREFIX.length)) as Decision;
  } catch {
    return null;
  }
}
