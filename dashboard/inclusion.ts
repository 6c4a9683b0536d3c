/**
 * Whether a decision's audit entry is in its agent's log: the agent pushes, per decision, the
 * entry's leaf index, and later the entry line with its audit path to a checkpoint; the proof
 * is checked here against the checkpoint this control plane verified for that instance
 * (audit-status.ts), and the line must be that decision's entry (same request, service,
 * caller, outcome), so an agent cannot point a decision at another entry or prove an entry
 * its signed log does not hold.
 */
import type { Checkpoint } from '../audit/checkpoint.ts';
import { provesInclusion } from '../audit/proof.ts';
import type { EntryProof } from '../agent/control/decisions.ts';
import type { DecisionRecord } from '../agent/sidecar/decision-log.ts';

export interface Inclusion {
  /** `pending` until a proof against a verified checkpoint arrives; `refused` when one did not hold (it stays refused). */
  status: 'pending' | 'included' | 'refused';
  /** The size of the verified checkpoint it is included in. */
  checkpoint_size: number | null;
  reason: string | null;
}

export const PENDING: Inclusion = { status: 'pending', checkpoint_size: null, reason: null };

/** Fields of the entry that must be the decision's own (not `status`: the entry has the filter's, the record what the caller got). */
const SAME = ['request_id', 'trace_id', 'method', 'decision', 'rule', 'mode', 'reason'] as const;

/** The inclusion of decision `d`'s entry as `pushed` proves it against `head`, the instance's verified checkpoint (null: none verified). */
export function checkInclusion(d: Omit<DecisionRecord, 'latency_ms'>, pushed: EntryProof, head: Checkpoint | null): Inclusion {
  const refused = (reason: string): Inclusion => ({ status: 'refused', checkpoint_size: null, reason });
  if (!head) return refused('no verified checkpoint of this agent instance');
  let entry: Record<string, any>;
  try {
    entry = JSON.parse(pushed.entry);
  } catch {
    return refused('the entry is not JSON');
  }
  if (entry?.seq !== pushed.index) return refused(`the entry is number ${entry?.seq}, not ${pushed.index}`);
  const other = SAME.find((k) => entry[k] !== d[k]);
  if (other) return refused(`the entry's ${other} is not this decision's`);
  if (entry.service !== d.target || (entry.caller?.id ?? null) !== d.caller) return refused('the entry names another service or caller');
  if (!provesInclusion(pushed.entry, pushed.index, pushed.proof, head)) return refused(`the proof does not lead to the verified checkpoint of ${head.size} entries`);
  return { status: 'included', checkpoint_size: head.size, reason: null };
}
