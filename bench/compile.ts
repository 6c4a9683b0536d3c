/**
 * Compile time and wasm size for generated policies of 10 … 10,000 rules.
 * Targets (issue 2): 1,000 rules compile in under 5 s to under 200 KB.
 * Usage: node --import tsx bench/compile.ts [sizes…]
 */
import { compilePolicy } from '../compiler/index.ts';
import { generatePolicy } from './gen-policy.ts';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const rows: string[] = [];
for (const n of sizes.length ? sizes : [10, 100, 1000, 10000]) {
  const text = JSON.stringify(generatePolicy(n), null, 1);
  const t0 = performance.now();
  const r = await compilePolicy(`bench-${n}.policy.json`, text);
  const ms = performance.now() - t0;
  if (!r.ok) throw new Error(`bench policy of ${n} rules does not compile: ${r.diagnostics[0]?.message}`);
  rows.push(`${String(n).padStart(6)} rules  compile ${(ms / 1000).toFixed(2).padStart(6)} s  wasm ${(r.wasm.length / 1024).toFixed(1).padStart(7)} KB  generated AS ${(r.as.length / 1024).toFixed(0).padStart(5)} KB`);
  console.log(rows[rows.length - 1]);
}
