/**
 * Is a cell's decision the same in both versions for every request of the cell, whatever the
 * conditions evaluate to? Each `when` is a boolean formula over atoms (comparisons,
 * membership, string tests); an atom over the request method, which is fixed in a cell, is
 * evaluated; every other atom is free: true, false or an evaluation error, independently
 * of the others. An allow rule with `inject` gets one more free atom: its injections
 * succeed. Both versions decided alike under every assignment means alike for every real
 * request (real requests realize only some assignments). Undecided (too many atoms): false.
 */
import type { CheckedRule, TExpr } from '../compiler/frontend/ast.ts';
import { printExpr } from '../compiler/ir/ir.ts';

type V = boolean | 'error';
const MAX_ATOMS = 8;

export function sameForAllConditions(method: string, oldRules: CheckedRule[], newRules: CheckedRule[]): boolean {
  const atoms = new Map<string, number>();
  const collect = (e: TExpr): void => {
    if (e.k === 'and' || e.k === 'or') return collect(e.l), collect(e.r);
    if (e.k === 'not') return collect(e.e);
    if (fixed(e, method) === undefined && !atoms.has(printExpr(e))) atoms.set(printExpr(e), atoms.size);
  };
  for (const r of [...oldRules, ...newRules]) {
    if (r.when) collect(r.when);
    if (r.effect === 'allow' && r.inject.length && !atoms.has(injectAtom(r))) atoms.set(injectAtom(r), atoms.size);
  }
  if (atoms.size > MAX_ATOMS) return false;
  const values: V[] = [true, false, 'error'];
  for (let n = 0; n < 3 ** atoms.size; n++) {
    const assignment = (key: string): V => values[Math.floor(n / 3 ** atoms.get(key)!) % 3];
    if (outcome(oldRules, method, assignment) !== outcome(newRules, method, assignment)) return false;
  }
  return true;
}

const injectAtom = (r: CheckedRule) => `inject ok: ${r.inject.map((i) => `${i.header}=${printExpr(i.value)}`).join(',')}`;

/** An atom the cell's method decides: `request.method == 'X'`, `!=`, `request.method in [...]`. */
function fixed(e: TExpr, method: string): V | undefined {
  const isMethod = (x: TExpr) => x.k === 'attr' && x.name === 'request.method';
  if (e.k === 'cmp' && (e.op === '==' || e.op === '!=')) {
    const [m, s] = isMethod(e.l) ? [e.l, e.r] : [e.r, e.l];
    if (isMethod(m) && s.k === 'str') return (s.v === method) === (e.op === '==');
  }
  if (e.k === 'in' && isMethod(e.elem) && e.coll.k === 'list') {
    const items = e.coll.items;
    if (items.every((i) => i.k === 'str')) return items.some((i) => i.k === 'str' && i.v === method);
  }
  if (e.k === 'bool') return e.v;
  return undefined;
}

function value(e: TExpr, method: string, atom: (key: string) => V): V {
  if (e.k === 'not') {
    const v = value(e.e, method, atom);
    return v === 'error' ? v : !v;
  }
  if (e.k === 'and' || e.k === 'or') {
    const l = value(e.l, method, atom);
    if (l === 'error' || l === (e.k === 'or')) return l;
    return value(e.r, method, atom);
  }
  return fixed(e, method) ?? atom(printExpr(e));
}

/** The decision as text: `deny`, or `allow` with the deciding rule's injections (the ids do not matter, what they do does). */
function outcome(rules: CheckedRule[], method: string, atom: (key: string) => V): string {
  const when = (r: CheckedRule): V => (r.when ? value(r.when, method, atom) : true);
  if (rules.some((r) => r.effect === 'deny' && when(r) !== false)) return 'deny';
  const allow = [...rules].sort((a, b) => a.index - b.index)
    .find((r) => r.effect === 'allow' && when(r) === true && (!r.inject.length || atom(injectAtom(r)) === true));
  return allow ? `allow ${allow.inject.map((i) => `${i.header}=${printExpr(i.value)}`).join(',')}` : 'deny';
}
