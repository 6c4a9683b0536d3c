/**
 * Which rules can meet a footprint (the callers and requests a change can show on), found
 * through an index of the rules' path templates so that a footprint costs the rules near it,
 * not every rule of the policy.
 */
import type { CheckedPolicy, CheckedRule, PrincipalPattern, RequestMatch } from '../compiler/frontend/ast.ts';
import { trustDomainOf } from '../compiler/frontend/spiffe.ts';
import { callerSegs, entriesOverlap, overlap, pathSegs, type Segs } from './classes.ts';

/** Where a change can show: the callers and requests of a changed rule, or every request of a trust domain. */
export interface Footprint { callers: { domain: string } | PrincipalPattern[]; to: RequestMatch[] | null }

export const ownDomain = (p: CheckedPolicy) => trustDomainOf(p.service);
export const footprintOf = (policy: CheckedPolicy, r: CheckedRule): Footprint => ({ callers: r.from ?? { domain: ownDomain(policy) }, to: r.to });

/** Can a request of the footprint meet the rule's `from` and `to`? */
function meets(f: Footprint, policy: CheckedPolicy, r: CheckedRule): boolean {
  const own = ownDomain(policy);
  const callers = 'domain' in f.callers
    ? (r.from ? r.from.some((p) => p.trustDomain === (f.callers as { domain: string }).domain) : f.callers.domain === own)
    : f.callers.some((p) => (r.from ? r.from.some((q) => q.trustDomain === p.trustDomain && overlap(callerSegs(p), callerSegs(q))) : p.trustDomain === own));
  return callers && (!f.to || !r.to || f.to.some((e) => r.to!.some((m) => entriesOverlap(e, m))));
}

interface Node { literal: Map<string, Node>; param?: Node; /** Rules with a template whose fixed part ends here. */ rules: Set<CheckedRule> }
const node = (): Node => ({ literal: new Map(), rules: new Set() });

/** A policy's rules by path template (a trie of their segments); rules with any path apart. */
export class RuleIndex {
  readonly #root = node();
  readonly #anyPath: CheckedRule[] = [];

  constructor(readonly policy: CheckedPolicy) {
    for (const r of policy.rules) {
      const templates = r.to?.flatMap((m) => m.paths ?? [null]) ?? [null];
      if (templates.includes(null)) this.#anyPath.push(r);
      else for (const t of templates) this.#insert(pathSegs(t!), r);
    }
  }

  #insert(t: Segs, r: CheckedRule): void {
    let at = this.#root;
    for (const s of t.segs) {
      const next = s === null ? (at.param ??= node()) : at.literal.get(s) ?? at.literal.set(s, node()).get(s)!;
      at = next;
    }
    at.rules.add(r);
  }

  /** Every rule that can meet the footprint. */
  near(f: Footprint): CheckedRule[] {
    const candidates = new Set<CheckedRule>(this.#anyPath);
    const templates = f.to?.flatMap((m) => m.paths ?? [null]) ?? [null];
    if (templates.includes(null)) return this.policy.rules.filter((r) => meets(f, this.policy, r));
    for (const t of templates) this.#overlapping(pathSegs(t!), this.#root, 0, candidates);
    return this.policy.rules.filter((r) => candidates.has(r) && meets(f, this.policy, r));
  }

  /** Adds the rules of every template under `at` (depth `depth`) that may match a path `t` matches (a superset; `meets` decides). */
  #overlapping(t: Segs, at: Node, depth: number, out: Set<CheckedRule>): void {
    // Templates ending here: a `**` one may cover t's longer paths, an exact one t's paths of this length.
    for (const r of at.rules) out.add(r);
    if (depth >= t.segs.length && t.rest) return this.#subtree(at, out);
    if (depth >= t.segs.length) return;
    const s = t.segs[depth];
    if (at.param) this.#overlapping(t, at.param, depth + 1, out);
    if (s === null) for (const child of at.literal.values()) this.#overlapping(t, child, depth + 1, out);
    else if (at.literal.has(s)) this.#overlapping(t, at.literal.get(s)!, depth + 1, out);
  }

  #subtree(at: Node, out: Set<CheckedRule>): void {
    for (const r of at.rules) out.add(r);
    if (at.param) this.#subtree(at.param, out);
    for (const child of at.literal.values()) this.#subtree(child, out);
  }
}
