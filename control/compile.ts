/**
 * The one place the control plane turns a submitted policy into a filter. A service's
 * effective policy is compiled here and nowhere else, so composing layers is a change to
 * this function only.
 */
import { compilePolicy, type CompileResult } from '../compiler/index.ts';

/** The file name diagnostics are reported against: what `palisade compile` would call it. */
export const policyFile = (name: string) => `${name}.policy.json`;

export function compileService(name: string, source: string): Promise<CompileResult> {
  return compilePolicy(policyFile(name), source);
}
