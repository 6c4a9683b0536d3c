/**
 * The decisions the pane shows: a bounded window in memory, per service, and what is
 * aggregated from it. Agents push summaries of their inbound decisions (agent/control/
 * decisions.ts); nothing here is durable: the audit log on each agent is the record, this is
 * the view of the last minutes.
 *
 * Bounds: at most `perService` decisions per service (the oldest go first) and at most
 * `services` services (a new one beyond that is counted as dropped), so memory is bounded
 * whatever the agents send. Every answer is aggregated or paginated: the graph is one edge
 * per (caller, target) pair, a decision page at most PAGE_MAX rows.
 */
import type { DecisionRecord } from '../agent/sidecar/decision-log.ts';
import type { Inclusion } from './inclusion.ts';

/** The sidecar's decision record (latency aside), and what the control plane adds to it. */
export interface DecisionSummary extends Omit<DecisionRecord, 'latency_ms'> {
  /** Assigned on arrival: the pane links to a decision by it. */
  id: number;
  /** ms since the epoch, when the control plane received it. */
  at: number;
  /** The agent instance that reported it. */
  instance: string;
  /** Whether the caller's fingerprint was verified, refused (with the reason), or absent. */
  fingerprint: 'verified' | 'refused' | 'absent';
  policy: { name: string; version: number; sha256: string } | null;
  /** Whether its audit entry (`audit_index`) is proven included in a checkpoint verified here; null without an entry. */
  audit_inclusion: Inclusion | null;
}

export type Verdict = 'allowed' | 'denied' | 'dry_run_denied';

export interface Edge {
  caller: string;
  target: string;
  allowed: number;
  denied: number;
  /** Would have been denied in enforce mode; forwarded because the policy runs in dry-run. */
  dry_run_denied: number;
  last_at: number;
}

export interface DecisionFilter {
  service?: string;
  caller?: string;
  user?: string;
  decision?: string;
  rule?: string;
  /** Only decisions received at or after this time (ms). */
  since?: number;
  /** Only decisions with an id below this (the next page of a listing, newest first). */
  before?: number;
}

export const PAGE_MAX = 200;
/** The caller of a request that presented no verified identity. */
export const NO_IDENTITY = '(no identity)';

export function verdictOf(d: Pick<DecisionSummary, 'decision' | 'mode' | 'status'>): Verdict {
  if (d.decision === 'allow') return 'allowed';
  // dry-run: the filter's verdict was deny, the caller got through (status below 400).
  return d.mode === 'dry-run' && d.status < 400 ? 'dry_run_denied' : 'denied';
}

/** A fixed-capacity ring: push is O(1), iteration newest first. */
class Ring<T> {
  readonly #items: (T | undefined)[];
  #next = 0;
  #size = 0;
  constructor(readonly capacity: number) {
    this.#items = new Array(capacity);
  }
  push(item: T): void {
    this.#items[this.#next] = item;
    this.#next = (this.#next + 1) % this.capacity;
    this.#size = Math.min(this.#size + 1, this.capacity);
  }
  get size(): number {
    return this.#size;
  }
  *newestFirst(): Generator<T> {
    for (let i = 1; i <= this.#size; i++) yield this.#items[(this.#next - i + this.capacity) % this.capacity]!;
  }
}

export class DecisionWindow {
  readonly #byService = new Map<string, Ring<DecisionSummary>>();
  #nextId = 1;
  #dropped = 0;

  constructor(
    readonly perService = 10_000,
    readonly services = 1_000,
    private readonly now: () => number = Date.now,
  ) {}

  add(d: Omit<DecisionSummary, 'id' | 'at'>): DecisionSummary | undefined {
    let ring = this.#byService.get(d.target);
    if (!ring) {
      if (this.#byService.size >= this.services) {
        this.#dropped++;
        return undefined;
      }
      this.#byService.set(d.target, (ring = new Ring(this.perService)));
    }
    const summary = { ...d, id: this.#nextId++, at: this.now() };
    ring.push(summary);
    return summary;
  }

  get size(): number {
    let n = 0;
    for (const ring of this.#byService.values()) n += ring.size;
    return n;
  }

  /** Decisions refused for lack of room (a service beyond the `services` bound). */
  get dropped(): number {
    return this.#dropped;
  }

  /** One edge per (caller, target) over the decisions received since `since`. */
  edges(since: number): Edge[] {
    const edges = new Map<string, Edge>();
    for (const ring of this.#byService.values()) {
      for (const d of ring.newestFirst()) {
        if (d.at < since) break; // newest first: the rest is older
        const caller = d.caller ?? NO_IDENTITY;
        const key = `${caller}\n${d.target}`;
        const edge = edges.get(key) ?? edges.set(key, { caller, target: d.target, allowed: 0, denied: 0, dry_run_denied: 0, last_at: d.at }).get(key)!;
        edge[verdictOf(d)]++;
      }
    }
    return [...edges.values()];
  }

  /** Newest first, at most `limit` (≤ PAGE_MAX) matching `filter`. */
  list(filter: DecisionFilter, limit = 50): DecisionSummary[] {
    const max = Math.max(1, Math.min(PAGE_MAX, limit));
    const rings = filter.service ? [this.#byService.get(filter.service)].filter((r) => r !== undefined) : [...this.#byService.values()];
    // Each ring is newest first: merge them by id, taking only what can still be on the page.
    const matches: DecisionSummary[] = [];
    for (const ring of rings) {
      let taken = 0;
      for (const d of ring.newestFirst()) {
        if (filter.since !== undefined && d.at < filter.since) break;
        if (filter.before !== undefined && d.id >= filter.before) continue;
        if (!matchesFilter(d, filter)) continue;
        matches.push(d);
        if (++taken >= max) break;
      }
    }
    return matches.sort((a, b) => b.id - a.id).slice(0, max);
  }

  /** The decision `instance` of `target` reported with audit entry `index`, if still in the window. */
  audited(target: string, instance: string, index: number): DecisionSummary | undefined {
    for (const d of this.#byService.get(target)?.newestFirst() ?? []) if (d.audit_index === index && d.instance === instance) return d;
    return undefined;
  }

  get(id: number): DecisionSummary | undefined {
    for (const ring of this.#byService.values()) for (const d of ring.newestFirst()) if (d.id === id) return d;
    return undefined;
  }
}

function matchesFilter(d: DecisionSummary, f: DecisionFilter): boolean {
  return (f.caller === undefined || (d.caller ?? NO_IDENTITY) === f.caller)
    && (f.user === undefined || d.user === f.user)
    && (f.decision === undefined || d.decision === f.decision || verdictOf(d) === f.decision)
    && (f.rule === undefined || d.rule === f.rule);
}
