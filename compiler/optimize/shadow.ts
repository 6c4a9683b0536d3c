/**
 * Shadowed allow rules: an allow rule can never decide a request when an unconditional deny
 * rule matches every request it matches (deny wins over allow whatever the order). Such a
 * rule is marked never-applying, with the deny rule named in the warning.
 */
import type { PathTemplate, PrincipalPattern } from '../frontend/ast.ts';
import { ruleAt, type Program, type Route } from '../ir/ir.ts';
import { trustDomainOf } from '../frontend/spiffe.ts';

export function shadow(p: Program): Program {
  const walls = p.rules.filter((r) => r.effect === 'deny' && r.when === null && !r.never);
  if (!walls.length) return p;
  const own = trustDomainOf(p.service);
  return {
    ...p,
    rules: p.rules.map((r) => {
      if (r.effect !== 'allow' || r.never) return r;
      const by = walls.find((d) => callersCover(d.from, r.from, own) && routesCover(d.routes, r.routes));
      return by ? { ...r, never: `shadowed by deny rule '${by.id}' (${ruleAt(p, by)}), which matches every request it matches` } : r;
    }),
  };
}

/** A segment pattern: literal text, or `null` for a one-segment wildcard (`*`, `{param}`). */
export type Segs = { segs: (string | null)[]; rest: boolean };

/** Does every sequence `inner` matches also match `outer`? */
export function segsCover(outer: Segs, inner: Segs): boolean {
  if (inner.segs.length < outer.segs.length) return false;
  for (let i = 0; i < outer.segs.length; i++) {
    const o = outer.segs[i];
    if (o !== null && o !== inner.segs[i]) return false;
  }
  if (outer.rest) return inner.segs.length > outer.segs.length || inner.rest;
  return inner.segs.length === outer.segs.length && !inner.rest;
}

const principalSegs = (x: PrincipalPattern): Segs => ({ segs: x.segments.map((s) => (s === '*' ? null : s)), rest: x.rest });
export const pathSegs = (x: PathTemplate): Segs => ({ segs: x.segments.map((s) => (s.kind === 'param' ? null : s.value)), rest: x.rest });

/** `null` (no `from`): every caller of the service's own trust domain `own`. */
export function callersCover(outer: PrincipalPattern[] | null, inner: PrincipalPattern[] | null, own: string): boolean {
  if (outer === null) return inner === null || inner.every((i) => i.trustDomain === own);
  if (inner === null) return false;
  return inner.every((i) => outer.some((o) => o.trustDomain === i.trustDomain && segsCover(principalSegs(o), principalSegs(i))));
}

export function routesCover(outer: Route[] | null, inner: Route[] | null): boolean {
  if (outer === null) return true;
  if (inner === null) return false;
  return inner.every((i) => outer.some((o) => routeCovers(o, i)));
}

function routeCovers(o: Route, i: Route): boolean {
  const methods = o.methods === null || (i.methods !== null && i.methods.every((m) => o.methods!.includes(m)));
  const path = o.path === null || (i.path !== null && segsCover(pathSegs(o.path), pathSegs(i.path)));
  return methods && path;
}
