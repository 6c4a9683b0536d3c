/**
 * The compiler front end as one pure call: policy text → `CheckedPolicy` + diagnostics.
 * Stages: JSON with positions (source.ts) → JSON Schema (schema.ts) → checker (check.ts).
 */
import type { CheckedPolicy, Diagnostic } from './ast.ts';
import { parseSource } from './source.ts';
import { validateSchema } from './schema.ts';
import { check } from './check.ts';

/**
 * Analyzes one policy file. `policy` is null when any diagnostic is an error; warnings may
 * come with a policy. Diagnostics are sorted by position. Never throws on any input.
 */
export function analyze(file: string, text: string): { policy: CheckedPolicy | null; diagnostics: Diagnostic[] } {
  const parsed = parseSource(file, text);
  if (!parsed.source) return { policy: null, diagnostics: parsed.diagnostics };
  const structural = validateSchema(parsed.source);
  const checked = check(parsed.source);
  // Where both speak about one value, the checker's message is the specific one (the schema
  // only knows that a SPIFFE ID starts with 'spiffe://'; the checker says what is wrong).
  const reported = new Set(checked.diagnostics.map((d) => d.span.pointer));
  const diagnostics = [...structural.filter((d) => !reported.has(d.span.pointer)), ...checked.diagnostics].sort(
    (a, b) => a.span.line - b.span.line || a.span.col - b.span.col,
  );
  const failed = diagnostics.some((d) => d.severity === 'error');
  return { policy: failed ? null : checked.policy, diagnostics };
}
