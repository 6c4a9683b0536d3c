/**
 * The whole compiler as one call: source text → checked policy (compiler/frontend/index.ts) →
 * IR (lower) → optimized IR (optimize/, optional passes) → plan (plan/, required: slots and
 * dispatch) → AssemblyScript (emit) → wasm (build).
 *
 *   const r = await compilePolicy('card-service.policy.json', text);
 *   if (r.ok) { r.wasm; r.manifest; r.warnings; r.ir; r.as } else { r.diagnostics }
 *
 * Bad input never throws: it comes back as `ok: false` with diagnostics (errors first
 * located by file:line:col and JSON pointer). `compileChecked` starts from a CheckedPolicy.
 */
import { analyze } from './frontend/index.ts';
import type { CheckedPolicy, Diagnostic } from './frontend/ast.ts';
import type { Program } from './ir/ir.ts';
import { lower } from './ir/lower.ts';
import { optimize } from './optimize/index.ts';
import { plan, type Plan } from './plan/index.ts';
import { printPlan } from './plan/print.ts';
import { emit } from './backend/emit.ts';
import { buildWasm } from './backend/build.ts';
import { manifestFor, type Manifest } from './backend/manifest.ts';

export type { Manifest };

export interface Compiled {
  ok: true;
  wasm: Uint8Array;
  manifest: Manifest;
  /** The plan (the optimized IR with its slots and dispatch indexes), printed (`--emit ir`). */
  ir: string;
  /** The generated AssemblyScript module (`--emit as`). */
  as: string;
  /** Front-end and optimizer warnings (e.g. rules that can never apply). */
  warnings: Diagnostic[];
  plan: Plan;
}

export type CompileResult = Compiled | { ok: false; diagnostics: Diagnostic[] };

export async function compilePolicy(file: string, text: string): Promise<CompileResult> {
  const { policy, diagnostics } = analyze(file, text);
  if (!policy) return { ok: false, diagnostics };
  const out = await compileChecked(policy);
  return { ...out, warnings: [...diagnostics.filter((d) => d.severity === 'warning'), ...out.warnings] };
}

/** Everything `compilePolicy` checks and warns about, without building wasm (`palisade check`). */
export function checkPolicy(file: string, text: string): Checked | { ok: false; diagnostics: Diagnostic[] } {
  const { policy, diagnostics } = analyze(file, text);
  if (!policy) return { ok: false, diagnostics };
  const { program, warnings } = optimize(lower(policy));
  return { ok: true, policy, program, warnings: [...diagnostics.filter((d) => d.severity === 'warning'), ...warnings] };
}

export interface Checked {
  ok: true;
  policy: CheckedPolicy;
  /** The optimized IR. */
  program: Program;
  /** Front-end and optimizer warnings, as `compilePolicy` reports them. */
  warnings: Diagnostic[];
}

export async function compileChecked(policy: CheckedPolicy): Promise<Compiled> {
  const { program, warnings } = optimize(lower(policy));
  const planned = plan(program);
  const as = emit(planned).source;
  const wasm = await buildWasm(as);
  return {
    ok: true,
    wasm,
    manifest: manifestFor(planned, policy.rules.length, wasm),
    ir: printPlan(planned),
    as,
    warnings,
    plan: planned,
  };
}
