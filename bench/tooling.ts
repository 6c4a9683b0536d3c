/**
 * The policy loop as users run it: wall time of `palisade check`, `palisade test`
 * (cold: empty filter cache; cached: the same policy again) and `palisade compile`, each a
 * fresh process through bin/palisade.js, for the examples and a generated 1,000-rule policy
 * with 100 cases. Targets: check under 1 s for the examples; a cached test skips the build.
 * Usage: node --import tsx bench/tooling.ts
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generatePolicy } from './gen-policy.ts';

const BIN = path.resolve('bin/palisade.js');
const work = mkdtempSync(path.join(tmpdir(), 'palisade-bench-tooling-'));
const cache = path.join(work, 'cache');

function seconds(args: string[]): string {
  const t0 = performance.now();
  try {
    execFileSync(process.execPath, [BIN, ...args], { env: { ...process.env, PALISADE_CACHE_DIR: cache }, stdio: 'ignore' });
  } catch (err) {
    return `exit ${(err as { status?: number }).status}`;
  }
  return `${((performance.now() - t0) / 1000).toFixed(2)} s`;
}

function row(name: string, policies: string[], cases: string[], compiled = policies): void {
  rmSync(cache, { recursive: true, force: true });
  const check = seconds(['check', ...policies]);
  const cold = seconds(['test', ...cases]);
  const cached = seconds(['test', ...cases]);
  const compile = seconds(['compile', '--out', path.join(work, 'build', name), ...compiled]);
  console.log(`| ${name} | ${check} | ${cold} | ${cached} | ${compile} |`);
}

const examples = readdirSync('examples', { recursive: true, encoding: 'utf8' }).map((f) => path.join('examples', f));
const big = generatePolicy(1000) as { rules: { id: string; effect: string; when?: string }[] };
writeFileSync(path.join(work, 'big.policy.json'), JSON.stringify(big, null, 1));
const cases = Array.from({ length: 100 }, (_, k) => {
  const i = k * 10;
  return { name: `rule ${i}`, request: { method: ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'][i % 5], path: `/api/v${i % 3}/res${i}/42`, source: `spiffe://bench.example/ns/team${i % 50}/sa/svc${i}`, user: { sub: 'u' } },
    expect: { decision: big.rules[i].effect === 'allow' && !big.rules[i].when ? 'allow' : 'deny' } };
});
writeFileSync(path.join(work, 'big.cases.json'), JSON.stringify({ policy: 'big.policy.json', cases }));

console.log('| policies | check | test, cold | test, cached | compile |');
console.log('| --- | ---: | ---: | ---: | ---: |');
try {
  // Two examples share the name "ledger": one compile run takes the six others.
  const policies = examples.filter((f) => f.endsWith('.policy.json'));
  row('examples (7 policies, 98 cases; compile: 6)', policies, examples.filter((f) => f.endsWith('.cases.json')), policies.filter((f) => !f.startsWith('examples/demo')));
  row('1,000 rules, 100 cases', [path.join(work, 'big.policy.json')], [path.join(work, 'big.cases.json')]);
} finally {
  rmSync(work, { recursive: true, force: true });
}
