/**
 * Compile time and wasm size for generated policies of 10 … 10,000 rules, in two shapes:
 * the mixed bench policy, and one where every rule has its own `when`.
 * Targets: 1,000 mixed rules compile in under 5 s to under 200 KB; 10,000 rules
 * each with its own `when` in under 60 s on 2 cores.
 * The first compilation of a process also pays for loading asc and binaryen (~1–4 s);
 * wall time on a busy machine can be a multiple of the CPU time, so both are shown.
 * Usage: node --import tsx bench/compile.ts [sizes…]
 */
import { compilePolicy } from '../compiler/index.ts';
import { generatePolicy, generateWhenPolicy } from './gen-policy.ts';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const rows: string[] = [];
const shapes = [['mixed', generatePolicy], ['own when', generateWhenPolicy]] as const;
for (const [shape, generate] of shapes) for (const n of sizes.length ? sizes : [10, 100, 1000, 10000]) {
  const text = JSON.stringify(generate(n), null, 1);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const r = await compilePolicy(`bench-${n}.policy.json`, text);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  if (!r.ok) throw new Error(`bench policy of ${n} rules does not compile: ${r.diagnostics[0]?.message}`);
  rows.push(`${shape.padEnd(8)} ${String(n).padStart(6)} rules  compile ${(ms / 1000).toFixed(2).padStart(6)} s (cpu ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s)  wasm ${(r.wasm.length / 1024).toFixed(1).padStart(7)} KB  generated AS ${(r.as.length / 1024).toFixed(0).padStart(5)} KB`);
  console.log(rows[rows.length - 1]);
}
