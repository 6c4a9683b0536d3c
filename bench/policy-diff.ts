/**
 * `palisade diff` on generated policies the way they change in review: NEW is OLD with a
 * few rules edited (a method added, a condition changed), one removed and two added, so
 * the figure is that of a realistic pull request, not of two unrelated policies. Times the
 * diff itself (both policies already checked), and `--replay` of 100,000 recorded decisions
 * (decision-log lines, 20,000 distinct requests): parsing, then both compiled filters in
 * the strict host (compiling them is timed apart), in this process.
 * Usage: node --import tsx bench/policy-diff.ts [rules...]   (default: 1000 10000)
 */
import { analyze } from '../compiler/frontend/index.ts';
import type { CheckedPolicy } from '../compiler/frontend/ast.ts';
import { compilePolicy } from '../compiler/index.ts';
import { diffPolicies } from '../diff/index.ts';
import { replay } from '../diff/replay.ts';
import { parseObserved } from '../learn/observed.ts';
import { BENCH_SERVICE, caller, generatePolicy } from './gen-policy.ts';

type Rule = Record<string, unknown> & { id: string; to: { methods: string[]; paths: string[] }[] };

/** OLD and the NEW a reviewer would see for it. */
export function changedPair(n: number): [Record<string, unknown>, Record<string, unknown>] {
  const old = generatePolicy(n) as { rules: Rule[] };
  const rules: Rule[] = structuredClone(old.rules);
  // Rules without a `when` (index a multiple of 4), so that the edits change what requests without claims get.
  const at = (k: number) => Math.floor((n * k) / 28) * 4;
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

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'];
const RECORDS = 100_000;

/** Decision-log lines for requests to 1,000 rules spread over the generated policy, one in a hundred to the rules changedPair edits. */
function decisionLog(n: number): string {
  const lines = [];
  for (let k = 0; k < RECORDS; k++) {
    const i = k % 100 === 0 ? Math.floor((n * ((k / 100) % 4 + 1)) / 28) * 4 : ((k % 1_000) * Math.floor(n / 1_000)) % n;
    lines.push(JSON.stringify({ level: 30, time: new Date(1_700_000_000_000 + k).toISOString(), caller: caller(i), target: BENCH_SERVICE, method: METHODS[i % 5],
      path: `/api/v${i % 3}/res${i}/${k % 20}`, decision: 'allow', rule: `rule-${i}`, mode: 'enforce', status: 200, reason: 'allow_rule', msg: 'decision' }));
  }
  return `${lines.join('\n')}\n`;
}

const seconds = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(2)} s`;

if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = process.argv.length > 2 ? process.argv.slice(2).map(Number) : [1_000, 10_000];
  console.log(`| rules | diff | regions | compile both | replay ${RECORDS.toLocaleString('en')} decisions: parse | replay: both filters | changed |`);
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const n of sizes) {
    const docs = changedPair(n);
    const [a, b] = docs.map(checked);
    let t0 = performance.now();
    const regions = diffPolicies(a, b);
    const diffTime = seconds(t0);
    t0 = performance.now();
    const wasm = [];
    for (const doc of docs) {
      const c = await compilePolicy('bench.json', JSON.stringify(doc));
      if (!c.ok) throw new Error('the generated policy does not compile');
      wasm.push(c.wasm);
    }
    const compileTime = seconds(t0);
    const text = decisionLog(n);
    t0 = performance.now();
    const observed = parseObserved('bench.jsonl', text);
    const parseTime = seconds(t0);
    t0 = performance.now();
    const r = await replay(wasm[0], wasm[1], BENCH_SERVICE, observed);
    console.log(`| ${n.toLocaleString('en')} | ${diffTime} | ${regions.length} | ${compileTime} | ${parseTime} | ${seconds(t0)} | ${r.changed.length} |`);
  }
}
