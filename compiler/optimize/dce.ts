/**
 * Dead-rule elimination: removes every rule a previous pass proved can never apply, with a
 * warning that says why. Removing them changes no decision; the runtime then never looks
 * at them.
 */
import type { Program } from '../ir/ir.ts';
import type { Warn } from './pass.ts';

export function dce(p: Program, warn: Warn): Program {
  const dead = p.rules.filter((r) => r.never);
  if (!dead.length) return p;
  for (const r of dead) warn({ severity: 'warning', message: `rule '${r.id}' can never apply: ${r.never}`, span: r.span });
  return { ...p, rules: p.rules.filter((r) => !r.never) };
}
