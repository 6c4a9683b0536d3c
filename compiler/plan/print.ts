/**
 * A plan rendered for people (`palisade compile --emit ir`): the program with its slots named
 * in every expression, then the dispatch indexes.
 */
import { printExpr, printHeader, printRules, type Expr } from '../ir/ir.ts';
import type { Plan, Slot, TrieNode } from './plan.ts';

export function printPlan(p: Plan): string {
  const out = printHeader(p);
  if (p.slots.length) {
    out.push('slots:');
    p.slots.forEach((s, i) => out.push(`  s${i} = ${printSlot(s)}`));
  }
  out.push(...printRules(p, slotNamer(p)));
  const r = p.routes;
  out.push('route dispatch (path trie; [methods] per hit):');
  const atoms = (ids: number[]) => ids.map((a) => `r${r.atoms[a].rule}${r.atoms[a].methods ? `[${r.atoms[a].methods!.join(',')}]` : ''}`).join(' ');
  if (r.anyPath.length) out.push(`  (any path) → ${atoms(r.anyPath)}`);
  printTrie(r.trie, '', '{}', atoms, out, '  ');
  out.push('principal index:');
  const rules = (ids: number[]) => ids.map((x) => `r${x}`).join(' ');
  for (const [td, d] of p.principals.domains) {
    for (const [path, rs] of d.exact) out.push(`  = spiffe://${td}${path} → ${rules(rs)}`);
    printTrie(d.trie, `spiffe://${td}`, '*', rules, out, '  ');
  }
  return out.join('\n') + '\n';
}

/** An expression of the plan, each slot read shown with what it reads. */
export function printPlanExpr(e: Expr, p: Plan): string {
  return printExpr(e, slotNamer(p));
}

const slotNamer = (p: Plan) => (slot: number) => printSlot(p.slots[slot]);

function printSlot(s: Slot): string {
  if (s.kind === 'claim') return `user.claims${s.path.map((k) => `[${JSON.stringify(k)}]`).join('')}`;
  return `request.${s.kind === 'header' ? 'headers' : 'query'}[${JSON.stringify(s.key)}]`;
}

/** Depth first, literal children before the wildcard; iterative, as a trie can be thousands of segments deep. */
function printTrie(root: TrieNode, rootPrefix: string, anyName: string, show: (ids: number[]) => string, out: string[], indent: string): void {
  const stack = [{ n: root, prefix: rootPrefix }];
  while (stack.length) {
    const { n, prefix } = stack.pop()!;
    if (n.exact.length) out.push(`${indent}${prefix || '/'} → ${show(n.exact)}`);
    if (n.rest.length) out.push(`${indent}${prefix}/** → ${show(n.rest)}`);
    if (n.any) stack.push({ n: n.any, prefix: `${prefix}/${anyName}` });
    for (const [seg, child] of [...n.lits].reverse()) stack.push({ n: child, prefix: `${prefix}/${seg}` });
  }
}
