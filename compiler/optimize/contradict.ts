/**
 * Rules whose own conditions contradict each other: an empty caller list, or routes that
 * can match no request (every request match has an empty method or path list).
 */
import type { Program, Rule } from '../ir/ir.ts';

export function contradictions(p: Program): Program {
  return { ...p, rules: p.rules.map(check) };
}

function check(r: Rule): Rule {
  if (r.never) return r;
  if (r.from && r.from.length === 0) return { ...r, never: 'its `from` matches no caller' };
  if (r.routes) {
    const routes = r.routes.filter((x) => x.methods === null || x.methods.length > 0);
    if (routes.length === 0) return { ...r, never: 'its `to` matches no request (no method or path can match)' };
    if (routes.length !== r.routes.length) return { ...r, routes };
  }
  return r;
}
