/**
 * `palisade diff --replay`: which recorded requests (decision log or audit log, read by
 * learn/observed.ts) the two versions decide differently, each run through both versions'
 * compiled filters in the strict host, the ground truth. Fingerprints are off, as for
 * learn's replay: a recorded request's fingerprint was checked when it was made and cannot
 * be presented again. A record keeps neither headers nor query values (their names only),
 * so a `when` reading them sees them absent; the claims are those the audit log recorded
 * (the decision log has none). A recorded decision that OLD does not reproduce is flagged:
 * the log was made by another version, or the decision hung on what the record left out.
 */
import type { Observed } from '../learn/observed.ts';
import { evaluate } from '../testing/cases.ts';
import { FilterSet } from '../testing/filter-set.ts';

/** What a version's filter did with a request. */
export interface Verdict { decision: string; status: number; rule: string | null }

export interface Replayed {
  time: string | null;
  caller: string | null;
  method: string;
  path: string;
  /** The decision the log recorded, null when it did not. */
  recorded: string | null;
  old: Verdict;
  new: Verdict;
}

export interface Replay {
  /** Records replayed (those of the policy's service). */
  requests: number;
  /** Records for other services, not replayed. */
  otherServices: number;
  /** The records OLD and NEW decide differently (decision or status). */
  changed: Replayed[];
  /** The records whose recorded decision is not OLD's. */
  unlike: Replayed[];
}

/** Replays `observed` through both compiled versions of `service`'s policy. */
export async function replay(oldWasm: Uint8Array, newWasm: Uint8Array, service: string, observed: Observed[]): Promise<Replay> {
  const sets = [new FilterSet(oldWasm, 'old'), new FilterSet(newWasm, 'new')];
  const out: Replay = { requests: 0, otherServices: 0, changed: [], unlike: [] };
  try {
    const filters = await Promise.all(sets.map((s) => s.for({ fingerprint: 'off' })));
    // Logs repeat requests: each distinct one is decided once per version.
    const decided = new Map<string, Verdict[]>();
    for (const r of observed) {
      if (r.service !== service) {
        out.otherServices++;
        continue;
      }
      out.requests++;
      const key = JSON.stringify([r.caller, r.method, r.path, r.user]);
      let verdicts = decided.get(key);
      if (!verdicts) {
        const request = { method: r.method, path: r.path, fingerprint: null, ...(r.caller !== null ? { source: r.caller } : {}), ...(r.user ? { user: r.user } : {}) };
        verdicts = await Promise.all(filters.map(async (f) => verdictOf(await evaluate(f, request, service, 'replay'))));
        decided.set(key, verdicts);
      }
      const [o, n] = verdicts;
      const row: Replayed = { time: r.time ?? null, caller: r.caller, method: r.method, path: r.path, recorded: r.decision ?? null, old: o, new: n };
      if (o.decision !== n.decision || o.status !== n.status) out.changed.push(row);
      if (r.decision !== undefined && r.decision !== o.decision) out.unlike.push(row);
    }
  } finally {
    await Promise.all(sets.map((s) => s.close()));
  }
  return out;
}

function verdictOf(result: Awaited<ReturnType<typeof evaluate>>): Verdict {
  // No fingerprint is built (`fingerprint: null`), so no string (why one could not be) comes back.
  if (typeof result === 'string') throw new Error(result);
  const d = result.decision;
  return { decision: d?.decision ?? 'error', status: result.outcome.status, rule: d?.rule ?? null };
}
