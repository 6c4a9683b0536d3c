/**
 * The required planning steps, after the optional optimization passes: `Program → Plan`.
 * Slots first (they rewrite the rules' expressions), then the dispatch indexes over the
 * rules as they will be laid out. Any `Program` can be planned, optimized or not.
 */
import type { Program } from '../ir/ir.ts';
import type { Plan } from './plan.ts';
import { assignSlots } from './slots.ts';
import { principalIndex, routeIndex } from './dispatch.ts';

export type { Plan };

export function plan(p: Program): Plan {
  const { rules, slots } = assignSlots(p.rules);
  return { ...p, rules, slots, routes: routeIndex(rules), principals: principalIndex(rules, p.federatesWith) };
}
