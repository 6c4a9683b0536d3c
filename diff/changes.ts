/**
 * Which rules a change touches. Two versions decide alike wherever only rules they have in
 * common match, in the same relative order: the decision is a function of the matching
 * rules' effect, `from`, `to`, `when` and `inject` (never of a rule's id or position) and of
 * the order of the allow rules among them. So every rule of one version without an equal
 * counterpart in the other, and every common rule whose relative order moved, is changed;
 * everything else is not, and diff never looks at cells only those meet.
 */
import type { CheckedPolicy, CheckedRule } from '../compiler/frontend/ast.ts';
import { printExpr } from '../compiler/ir/ir.ts';

/** A rule's meaning, without its id and position. */
export function ruleContent(r: CheckedRule): string {
  return JSON.stringify([
    r.effect,
    r.from?.map((p) => p.text) ?? null,
    r.to?.map((m) => [m.methods, m.paths?.map((t) => t.text) ?? null]) ?? null,
    r.when ? printExpr(r.when) : null,
    r.inject.map((i) => [i.header, printExpr(i.value)]),
  ]);
}

/** The rules of each version that a change touches (module comment). */
export function changedRules(a: CheckedPolicy, b: CheckedPolicy): { old: CheckedRule[]; new: CheckedRule[] } {
  const unmatched = new Map<string, CheckedRule[]>();
  for (const r of b.rules) {
    const k = ruleContent(r);
    unmatched.set(k, [...(unmatched.get(k) ?? []), r]);
  }
  // Common rules paired first come, first served; pairs[i] = [old rule, new rule].
  const pairs: [CheckedRule, CheckedRule][] = [];
  const oldOnly: CheckedRule[] = [];
  for (const r of a.rules) {
    const twin = unmatched.get(ruleContent(r))?.shift();
    if (twin) pairs.push([r, twin]);
    else oldOnly.push(r);
  }
  const paired = new Set(pairs.map(([, n]) => n));
  const newOnly = b.rules.filter((r) => !paired.has(r));
  const kept = increasingRun(pairs.map(([, n]) => n.index));
  const moved = pairs.filter((_, i) => !kept.has(i));
  return { old: [...oldOnly, ...moved.map(([o]) => o)], new: [...newOnly, ...moved.map(([, n]) => n)] };
}

/** The positions of a longest strictly increasing subsequence of `xs` (patience sorting, O(n log n)). */
function increasingRun(xs: number[]): Set<number> {
  const tails: number[] = [];
  const before = new Array<number>(xs.length).fill(-1);
  for (let i = 0; i < xs.length; i++) {
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (xs[tails[mid]] < xs[i]) lo = mid + 1;
      else hi = mid;
    }
    before[i] = lo > 0 ? tails[lo - 1] : -1;
    tails[lo] = i;
  }
  const run = new Set<number>();
  for (let i = tails.length ? tails[tails.length - 1] : -1; i >= 0; i = before[i]) run.add(i);
  return run;
}
