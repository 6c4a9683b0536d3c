/**
 * The compiler front end as one pure call: policy text → `CheckedPolicy` + diagnostics.
 * Stages: JSON with positions (source.ts) → JSON Schema (schema.ts) → checker (check.ts).
 * `analyzeLayer` stops before the last step, for documents that may be scope layers
 * (compiler/compose/ makes one policy of them).
 */
import type { CheckedLayer, CheckedPolicy, Diagnostic } from './ast.ts';
import { parseSource } from './source.ts';
import { validateSchema } from './schema.ts';
import { check } from './check.ts';

/**
 * Analyzes one policy file. `policy` is null when any diagnostic is an error; warnings may
 * come with a policy. Diagnostics are sorted by position. Never throws on any input.
 */
export function analyze(file: string, text: string): { policy: CheckedPolicy | null; diagnostics: Diagnostic[] } {
  const { layer, diagnostics } = analyzeLayer(file, text);
  if (layer?.level.kind !== 'scope') return { policy: layer && policyOf(layer, layer.level.id), diagnostics };
  const message = `a scope layer is not a policy on its own: compile it with the policy of a service below it (palisade compile --layer ${file} SERVICE.json)`;
  return { policy: null, diagnostics: [...diagnostics, { severity: 'error', message, span: layer.at.level }] };
}

/** A service's own policy or a scope layer, checked; as `analyze`, `layer` is null on any error. */
export function analyzeLayer(file: string, text: string): { layer: CheckedLayer | null; diagnostics: Diagnostic[] } {
  const parsed = parseSource(file, text);
  if (!parsed.source) return { layer: null, diagnostics: parsed.diagnostics };
  const structural = validateSchema(parsed.source);
  const checked = check(parsed.source);
  // Where both speak about one value, the checker's message is the specific one (the schema
  // only knows that a SPIFFE ID starts with 'spiffe://'; the checker says what is wrong).
  const reported = new Set(checked.diagnostics.map((d) => d.span.pointer));
  const diagnostics = [...structural.filter((d) => !reported.has(d.span.pointer)), ...checked.diagnostics].sort(
    (a, b) => a.span.line - b.span.line || a.span.col - b.span.col,
  );
  const failed = diagnostics.some((d) => d.severity === 'error');
  return { layer: failed ? null : checked.layer, diagnostics };
}

/** A service's layer as the policy the back end compiles (composition adds `layers`). */
export function policyOf(layer: CheckedLayer, service: string): CheckedPolicy {
  const { name, federatesWith, mode, source, rules } = layer;
  return { name, service, federatesWith, mode, source, rules };
}
