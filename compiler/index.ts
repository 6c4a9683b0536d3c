/**
 * The whole compiler as one call: source text → checked policy (compiler/frontend/index.ts,
 * composed from layers by compiler/compose/) →
 * IR (lower) → optimized IR (optimize/, optional passes) → plan (plan/, required: slots and
 * dispatch) → AssemblyScript (emit) → wasm (build).
 *
 *   const r = await compilePolicy('card-service.policy.json', text);
 *   if (r.ok) { r.wasm; r.manifest; r.warnings; r.ir; r.as } else { r.diagnostics }
 *
 * Bad input never throws: it comes back as `ok: false` with diagnostics (errors first
 * located by file:line:col and JSON pointer). `compileChecked` starts from a CheckedPolicy;
 * `compileLayers` composes a service's policy with the scope layers above it first.
 */
import { analyze, analyzeLayer } from './frontend/index.ts';
import { compose } from './compose/index.ts';
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
  return compileAnalyzed(analyze(file, text));
}

/**
 * One service's policy composed with the scope layers above it (the trust-domain root,
 * namespaces; compiler/compose/), compiled: the call a control plane makes, and what
 * `palisade compile --layer` makes of the same files, byte for byte. The order of `layers`
 * does not matter; the manifest lists every layer's file and sha256.
 */
export async function compileLayers(layers: LayerText[]): Promise<CompileResult> {
  return compileAnalyzed(composeLayers(layers));
}

/** Everything `compilePolicy` checks and warns about, without building wasm (`palisade check`). */
export function checkPolicy(file: string, text: string): Checked | { ok: false; diagnostics: Diagnostic[] } {
  return checkAnalyzed(analyze(file, text));
}

/** As `checkPolicy`, for one service's policy and the layers above it. */
export function checkLayers(layers: LayerText[]): Checked | { ok: false; diagnostics: Diagnostic[] } {
  return checkAnalyzed(composeLayers(layers));
}

/** A policy document given by text: a service's own policy or a scope layer. */
export interface LayerText {
  file: string;
  text: string;
}

type Analyzed = { policy: CheckedPolicy | null; diagnostics: Diagnostic[] };

function composeLayers(layers: LayerText[]): Analyzed {
  const analyzed = layers.map(({ file, text }) => analyzeLayer(file, text));
  const diagnostics = analyzed.flatMap((a) => a.diagnostics);
  const checked = analyzed.flatMap((a) => (a.layer ? [a.layer] : []));
  if (checked.length < analyzed.length) return { policy: null, diagnostics };
  const composed = compose(checked);
  return { policy: composed.policy, diagnostics: [...diagnostics, ...composed.diagnostics] };
}

const warningsOf = (diagnostics: Diagnostic[]) => diagnostics.filter((d) => d.severity === 'warning');

async function compileAnalyzed({ policy, diagnostics }: Analyzed): Promise<CompileResult> {
  if (!policy) return { ok: false, diagnostics };
  const out = await compileChecked(policy);
  return { ...out, warnings: [...warningsOf(diagnostics), ...out.warnings] };
}

function checkAnalyzed({ policy, diagnostics }: Analyzed): Checked | { ok: false; diagnostics: Diagnostic[] } {
  if (!policy) return { ok: false, diagnostics };
  const { program, warnings } = optimize(lower(policy));
  return { ok: true, policy, program, warnings: [...warningsOf(diagnostics), ...warnings] };
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
    manifest: manifestFor(planned, policy.rules.length, wasm, policy.layers),
    ir: printPlan(planned),
    as,
    warnings,
    plan: planned,
  };
}
