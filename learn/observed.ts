/**
 * Observed traffic for `palisade learn`: one request per line of a sidecar decision log
 * (pino JSON: `caller` is a SPIFFE ID string, `target` the service) or of an audit log
 * (`palisade audit query --format json`: `caller.id`, `service`), detected per line, with
 * what `palisade diff --replay` compares against: when, the recorded decision, the claims.
 */
import { parseSpiffe } from '../compiler/frontend/spiffe.ts';

export interface Observed {
  service: string;
  /** The verified caller's SPIFFE ID; null: none (such a request can never be allowed). */
  caller: string | null;
  method: string;
  /** The path as logged, query values already redacted. */
  path: string;
  /** When it was decided (ISO 8601, both logs' `time`), when recorded. */
  time?: string;
  /** The decision recorded then (`allow`, `deny`, …), when recorded. */
  decision?: string;
  /** The verified identity-context claims (audit lines only; the decision log keeps none). */
  user?: Record<string, unknown>;
}

export class ObservedError extends Error {}

/** The requests of one file's text; a line that is neither format throws one `file:line` error. */
export function parseObserved(file: string, text: string): Observed[] {
  const out: Observed[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const fail = (why: string): never => { throw new ObservedError(`${file}:${i + 1}: ${why}`); };
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      fail('not a JSON line');
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail('not a JSON object');
    const r = v as Record<string, unknown>;
    // The audit log names the service `service` and the caller `caller.id`; the decision log `target` and `caller`.
    const audit = 'service' in r;
    const service = audit ? r.service : r.target;
    const caller = audit ? (r.caller === null ? null : (r.caller as { id?: unknown } | undefined)?.id) : r.caller;
    if (typeof service !== 'string' || !service) return fail(`no ${audit ? '"service"' : '"target"'}: neither a decision log nor an audit log line`);
    const id = parseSpiffe(service, false);
    if (!id.ok) return fail(`${audit ? '"service"' : '"target"'} is not a workload SPIFFE ID: ${id.message}`);
    if (caller !== null && typeof caller !== 'string') return fail(`"${audit ? 'caller.id' : 'caller'}" must be a SPIFFE ID or null`);
    if (typeof r.method !== 'string' || !r.method) return fail('"method" must be a non-empty string');
    if (typeof r.path !== 'string' || !r.path.startsWith('/')) return fail('"path" must be a string starting with "/"');
    const claims = audit ? (r.user as { claims?: unknown } | null | undefined)?.claims : undefined;
    out.push({ service, caller, method: r.method, path: r.path, ...(typeof r.time === 'string' ? { time: r.time } : {}), ...(typeof r.decision === 'string' ? { decision: r.decision } : {}),
      ...(typeof claims === 'object' && claims !== null && !Array.isArray(claims) ? { user: claims as Record<string, unknown> } : {}) });
  });
  return out;
}
