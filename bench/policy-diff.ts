/**
 * `palisade diff` on generated policies the way they change in review: NEW is OLD with a
 * few rules edited (a method added, a condition changed), one removed and two added, so
 * the figure is that of a realistic pull request, not of two unrelated policies. Times the
 * diff itself (both policies already checked), in this process.
 * Usage: node --import tsx bench/policy-diff.ts [rules...]   (default: 1000 10000)
 */
import { analyze } from '../compiler/frontend/index.ts';
import type { CheckedPolicy } from '../compiler/frontend/ast.ts';
import { diffPolicies } from '../diff/index.ts';
import { caller, generatePolicy } from './gen-policy.ts';

type Rule = Record<string, unknown> & { id: string; to: { methods: string[]; paths: string[] }[] };

/** OLD and the NEW a reviewer would see for it. */
export function changedPair(n: number): [Record<string, unknown>, Record<string, unknown>] {
  const old = generatePolicy(n) as { rules: Rule[] };
  const rules: Rule[] = structuredClone(old.rules);
  const at = (k: number) => Math.floor((n * k) / 7);
  rules[at(1)].to[0].methods.push('HEAD');
  rules[at(2)].when = "request.headers['x-tenant'] == 'acme'";
  rules.splice(at(3), 1);
  rules.splice(at(4), 0, { id: 'added-allow', effect: 'allow', from: [caller(at(4))], to: [{ methods: ['GET'], paths: ['/api/v9/reports/{id}'] }] });
  rules.push({ id: 'added-deny', effect: 'deny', from: ['spiffe://bench.example/ns/team7/sa/*'], to: [{ methods: ['DELETE'], paths: ['/api/v1/**'] }] });
  return [old, { ...old, rules }];
}

function checked(doc: Record<string, unknown>): CheckedPolicy {
  const { policy, diagnostics } = analyze('bench.json', JSON.stringify(doc));
  if (!policy) throw new Error(diagnostics.map((d) => d.message).join('; '));
  return policy;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = process.argv.length > 2 ? process.argv.slice(2).map(Number) : [1_000, 10_000];
  console.log('| rules | diff | regions |');
  console.log('| ---: | ---: | ---: |');
  for (const n of sizes) {
    const [a, b] = changedPair(n).map(checked);
    const t0 = performance.now();
    const regions = diffPolicies(a, b);
    console.log(`| ${n.toLocaleString('en')} | ${((performance.now() - t0) / 1000).toFixed(2)} s | ${regions.length} |`);
  }
}
