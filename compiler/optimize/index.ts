/**
 * The optional optimization passes (pass.ts), run in this order. The planning steps
 * (compiler/plan/) do not depend on them. `optimize` returns the warnings the passes report
 * beside the program.
 */
import type { Diagnostic } from '../frontend/ast.ts';
import type { Program } from '../ir/ir.ts';
import type { Pass, Warn } from './pass.ts';
import { fold } from './fold.ts';
import { contradictions } from './contradict.ts';
import { shadow } from './shadow.ts';
import { dce } from './dce.ts';

const passes: { name: string; run: Pass }[] = [
  { name: 'fold', run: fold },
  { name: 'contradictions', run: contradictions },
  { name: 'shadow', run: shadow },
  { name: 'dce', run: dce },
];

export function optimize(p: Program): { program: Program; warnings: Diagnostic[] } {
  const warnings: Diagnostic[] = [];
  const warn: Warn = (d) => warnings.push(d);
  return { program: passes.reduce((prog, pass) => pass.run(prog, warn), p), warnings };
}
