/**
 * `palisade test --coverage`: which parts of a policy no case exercised. A rule is covered
 * when it decided some case (the filter's decision record names it); a `to` entry when a
 * case from a caller the rule's `from` admits matched it; a `when` when cases made it both
 * true and false. Which entry matched and what `when` gave come from the reference
 * interpreter (testing/oracle.ts) replaying each case that reached the rules in the filter.
 */
import type { CheckedPolicy, Span } from '../compiler/frontend/ast.ts';
import { traceRules } from './oracle.ts';
import type { CaseResult } from './cases.ts';

export interface RuleCoverage {
  id: string;
  at: string;
  /** Cases this rule decided. */
  decided: number;
  /** Per `to` entry: where it is and how many cases matched it. */
  to: { at: string; matched: number }[];
  /** How often `when` was true, false, or an error (null: no `when`). */
  when: { at: string; true: number; false: number; error: number } | null;
}

export interface PolicyCoverage {
  policy: string;
  rules: RuleCoverage[];
  /** One line per part no case exercised, `file:line:col: …`, in policy order. */
  uncovered: string[];
}

/** Reasons of decisions taken by the rules (the others are refusals before any rule). */
const RULE_REASONS = new Set(['allow_rule', 'deny_rule', 'deny_rule_when_error', 'no_allow_rule', 'inject_invalid_value']);

const at = (s: Span) => `${s.file}:${s.line}:${s.col}`;

export function coverage(policy: CheckedPolicy, results: CaseResult[]): PolicyCoverage {
  const rules: RuleCoverage[] = policy.rules.map((r) => ({
    id: r.id,
    at: at(r.span),
    decided: 0,
    to: (r.to ?? []).map((m) => ({ at: at(m.span), matched: 0 })),
    when: r.when ? { at: at(r.when.span), true: 0, false: 0, error: 0 } : null,
  }));
  for (const { case: c, decision } of results) {
    if (!decision || !RULE_REASONS.has(decision.reason)) continue;
    const covered = rules.find((r) => r.id === decision.rule);
    if (covered) covered.decided++;
    const { request } = c;
    const traces = traceRules(policy, { ...request, headers: { host: request.authority ?? 'palisade-test', ...request.headers } });
    traces?.forEach((t, i) => {
      t.to.forEach((hit, k) => { if (hit) rules[i].to[k].matched++; });
      const when = rules[i].when;
      if (when && t.when !== null) when[String(t.when) as 'true' | 'false' | 'error']++;
    });
  }
  const uncovered = rules.flatMap((r) => [
    ...(r.decided ? [] : [`${r.at}: rule '${r.id}' decided no case`]),
    ...r.to.filter((t) => !t.matched).map((t) => `${t.at}: a \`to\` entry of rule '${r.id}' matched no case`),
    ...(!r.when || (r.when.true && r.when.false) ? [] : [`${r.when.at}: the \`when\` of rule '${r.id}' was never ${r.when.true ? 'false' : r.when.false ? 'true' : 'evaluated'}`]),
  ]);
  return { policy: policy.source.file, rules, uncovered };
}
