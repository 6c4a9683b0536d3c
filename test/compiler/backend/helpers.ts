/** Builders shared by the back-end suites: policies through the real front end, filters through the real host. */
import { analyze } from '../../../compiler/frontend/index.ts';
import { formatDiagnostic, type CheckedPolicy } from '../../../compiler/frontend/ast.ts';
import { lower } from '../../../compiler/ir/lower.ts';
import type { Program } from '../../../compiler/ir/ir.ts';
import { loadFilter, FilterLoadError } from '../../../host/filter.ts';
import type { Compiled } from '../../../compiler/index.ts';
import { compiledText } from '../../support/compiled.ts';

export const SERVICE = 'spiffe://corp.test/ns/app/sa/api';

export function policyText(rules: unknown[], top: Record<string, unknown> = {}): string {
  return JSON.stringify({ palisade: 1, name: 'backend-test', service: SERVICE, rules, ...top }, null, 2);
}

/** A checked policy; fails the test on any front-end error. */
export function checked(rules: unknown[], top: Record<string, unknown> = {}): CheckedPolicy {
  const { policy, diagnostics } = analyze('t.policy.json', policyText(rules, top));
  if (!policy) throw new Error(diagnostics.map(formatDiagnostic).join('\n'));
  return policy;
}

/** The same policy compiled, once per test run (test/support/compiled.ts). */
export function compiledRules(rules: unknown[], top: Record<string, unknown> = {}): Promise<Compiled> {
  return compiledText('t.policy.json', policyText(rules, top));
}

export function lowered(rules: unknown[], top: Record<string, unknown> = {}): Program {
  return lower(checked(rules, top));
}

/** Does the host refuse to load `wasm` with this plugin configuration (proxy_on_configure false: FilterLoadError)? Other errors propagate. */
export async function refusesConfiguration(wasm: Uint8Array, configuration: string): Promise<boolean> {
  try {
    await (await loadFilter(wasm, { configuration })).close();
    return false;
  } catch (err) {
    if (err instanceof FilterLoadError) return true;
    throw err;
  }
}
