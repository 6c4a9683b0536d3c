/**
 * Lowering: `CheckedPolicy` → `Program`. Each rule's `to` (request matches × path
 * templates) flattens into routes, and the header names the policy may inject are collected
 * for stripping. No optimization happens here; see compiler/optimize/.
 */
import type { CheckedPolicy, CheckedRule } from '../frontend/ast.ts';
import type { Program, Route, Rule } from './ir.ts';

export function lower(policy: CheckedPolicy): Program {
  const rules = [...policy.rules].sort((a, b) => a.index - b.index).map(lowerRule);
  return {
    name: policy.name,
    service: policy.service,
    federatesWith: [...policy.federatesWith],
    mode: policy.mode,
    source: { ...policy.source },
    rules,
    strip: stripNames(rules),
  };
}

function lowerRule(r: CheckedRule): Rule {
  return {
    id: r.id,
    index: r.index,
    effect: r.effect,
    span: r.span,
    from: r.from,
    routes: r.to ? r.to.flatMap(flattenMatch) : null,
    when: r.when,
    inject: r.inject.map((i) => ({ header: i.header, value: i.value, span: i.span })),
  };
}

export function flattenMatch(m: NonNullable<CheckedRule['to']>[number]): Route[] {
  if (m.paths === null) return [{ methods: m.methods, path: null, span: m.span }];
  return m.paths.map((path) => ({ methods: m.methods, path, span: path.span }));
}

/**
 * Every name any rule may inject, sorted. Stripped from every request whatever the
 * decision, so a caller can never smuggle a value the upstream takes as policy-provided
 * (even a name only a different rule would set, or one of a rule that ended up not applying).
 */
export function stripNames(rules: Rule[]): string[] {
  return [...new Set(rules.flatMap((r) => r.inject.map((i) => i.header)))].sort();
}
