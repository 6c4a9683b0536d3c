/**
 * Slot assignment: every distinct header lookup, query lookup and claim path becomes a slot
 * that the runtime fills at most once per request (on first use) and then reuses, however
 * many rules read it. Slots are numbered in order of first use, so output is deterministic.
 */
import type { Expr, Rule } from '../ir/ir.ts';
import type { Slot } from './plan.ts';

/** The rules with every such read replaced by a `slot` read, and the slots they number. */
export function assignSlots(rules: Rule[]): { rules: Rule[]; slots: Slot[] } {
  const slots: Slot[] = [];
  const ids = new Map<string, number>();
  const slotOf = (s: Slot): number => {
    const key = JSON.stringify(s);
    let id = ids.get(key);
    if (id === undefined) ids.set(key, (id = slots.push(s) - 1));
    return id;
  };
  const go = (e: Expr): Expr => {
    switch (e.k) {
      case 'lookup':
        return e.map === 'params' ? e : { k: 'slot', slot: slotOf({ kind: e.map === 'headers' ? 'header' : 'query', key: e.key }), t: e.t, span: e.span };
      case 'claim': return { k: 'slot', slot: slotOf({ kind: 'claim', path: e.path }), t: e.t, span: e.span };
      case 'list': return { ...e, items: e.items.map(go) };
      case 'not': return { ...e, e: go(e.e) };
      case 'and': case 'or': case 'cmp': return { ...e, l: go(e.l), r: go(e.r) };
      case 'in': return { ...e, elem: go(e.elem), coll: go(e.coll) };
      case 'call': return { ...e, target: go(e.target), arg: go(e.arg) };
      case 'size': return { ...e, e: go(e.e) };
      default: return e;
    }
  };
  const slotted = rules.map((r) => ({
    ...r,
    when: r.when && go(r.when),
    inject: r.inject.map((i) => ({ ...i, value: go(i.value) })),
  }));
  return { rules: slotted, slots };
}
