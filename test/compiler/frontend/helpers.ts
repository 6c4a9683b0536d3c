/** Small builders shared by the front-end suites. */
import { analyze } from '../../../compiler/frontend/index.ts';
import { formatDiagnostic, type Diagnostic } from '../../../compiler/frontend/ast.ts';

export const SERVICE = 'spiffe://bank.example/ns/payments/sa/card-service';

/** A policy document (as pretty JSON text) around the given rules. */
export function policyText(rules: unknown[], top: Record<string, unknown> = {}): string {
  return JSON.stringify({ palisade: 1, name: 'card-service', service: SERVICE, rules, ...top }, null, 2);
}

/** A one-rule policy with a `when` expression and `to` (for params). */
export function whenText(when: string, to: unknown = [{ methods: ['GET'], paths: ['/cards/{id}'] }]): string {
  return policyText([{ id: 'r', effect: 'allow', to, when }]);
}

export function run(text: string, file = 'p.policy.json') {
  return analyze(file, text);
}

/** The formatted diagnostics, as `palisade compile` prints them. */
export function messages(text: string): string[] {
  return run(text).diagnostics.map(formatDiagnostic);
}

export function errorsOf(text: string): Diagnostic[] {
  return run(text).diagnostics.filter((d) => d.severity === 'error');
}

/** 1-based line and column of the first occurrence of `needle` in `text` (plus `shift`). */
export function positionOf(text: string, needle: string, shift = 0): { line: number; col: number } {
  const at = text.indexOf(needle);
  if (at < 0) throw new Error(`'${needle}' not in text`);
  const before = text.slice(0, at + shift);
  const line = before.split('\n').length;
  return { line, col: before.length - before.lastIndexOf('\n') };
}
