/**
 * The optimization pipeline: small passes, each `Program → Program`, run in this order.
 * Warnings accumulate in `Program.warnings`.
 */
import type { Program } from '../ir/ir.ts';
import { fold } from './fold.ts';
import { contradictions } from './contradict.ts';
import { shadow } from './shadow.ts';
import { dce } from './dce.ts';
import { assignSlots } from './slots.ts';
import { dispatch } from './dispatch.ts';

export type Pass = (p: Program) => Program;

export const passes: { name: string; run: Pass }[] = [
  { name: 'fold', run: fold },
  { name: 'contradictions', run: contradictions },
  { name: 'shadow', run: shadow },
  { name: 'dce', run: dce },
  { name: 'slots', run: assignSlots },
  { name: 'dispatch', run: dispatch },
];

export function optimize(p: Program): Program {
  return passes.reduce((prog, pass) => pass.run(prog), p);
}
