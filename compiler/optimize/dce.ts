/**
 * Dead-rule elimination: removes every rule a previous pass proved can never apply, with a
 * warning that says why. Removing them changes no decision; the runtime then never looks
 * at them.
 */
import type { Program } from '../ir/ir.ts';

export function dce(p: Program): Program {
  const dead = p.rules.filter((r) => r.never);
  if (!dead.length) return p;
  return {
    ...p,
    rules: p.rules.filter((r) => !r.never),
    warnings: [
      ...p.warnings,
      ...dead.map((r) => ({ severity: 'warning' as const, message: `rule '${r.id}' can never apply: ${r.never}`, span: r.span })),
    ],
  };
}
