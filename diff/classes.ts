/**
 * The classes of callers, methods and paths that a set of rules cannot tell apart, one
 * representative each. Classes are found by walking segment positions and branching only on
 * the literals the patterns have there plus one fresh segment, so every class of sequences
 * (by the set of patterns that match) gets exactly one representative.
 */
import type { CheckedRule, PathTemplate, PrincipalPattern, RequestMatch, TExpr } from '../compiler/frontend/ast.ts';
import { eachExpr } from './expr.ts';

/** A caller pattern's or path template's segments: a literal, or null for `*`/`{param}`; `rest`: a final `**`. */
export type Segs = { segs: (string | null)[]; rest: boolean };
const FRESH = 'zz-other';

/**
 * One representative segment list per class of sequences (by the set of `patterns` that
 * match), at least `min` long. Sequences longer than every pattern's fixed part plus one
 * behave alike, so the walk stops there (or where no pattern is alive). At each position the live patterns are bucketed by
 * their literal once (not filtered per literal), so a walk costs about the patterns' total size.
 */
export function segmentClasses(patterns: Segs[], min = 0): { segs: string[]; matches: number[] }[] {
  const maxLen = Math.max(0, ...patterns.map((p) => p.segs.length)) + 1;
  const out = new Map<string, { segs: string[]; matches: number[] }>();
  const walk = (prefix: string[], alive: number[]) => {
    const L = prefix.length;
    if (L >= min) {
      const matches = alive.filter((i) => (patterns[i].rest ? L > patterns[i].segs.length : L === patterns[i].segs.length)).sort((x, y) => x - y);
      const key = matches.join(',');
      if (!out.has(key)) out.set(key, { segs: [...prefix], matches });
    }
    if (L >= maxLen || (!alive.length && L >= min)) return;
    const byLiteral = new Map<string, number[]>();
    const any: number[] = [];
    for (const i of alive) {
      const p = patterns[i];
      if (L >= p.segs.length) {
        if (p.rest) any.push(i);
      } else if (p.segs[L] === null) any.push(i);
      else {
        const lit = p.segs[L] as string;
        const bucket = byLiteral.get(lit);
        if (bucket) bucket.push(i);
        else byLiteral.set(lit, [i]);
      }
    }
    for (const [lit, bucket] of byLiteral) walk([...prefix, lit], [...bucket, ...any]);
    walk([...prefix, fresh(byLiteral)], any);
  };
  walk([], patterns.map((_, i) => i));
  return [...out.values()];
}

function fresh(taken: Map<string, unknown>): string {
  let s = FRESH;
  for (let n = 1; taken.has(s); n++) s = `${FRESH}${n}`;
  return s;
}

export const pathSegs = (t: PathTemplate): Segs => ({ segs: t.segments.map((s) => (s.kind === 'param' ? null : s.value)), rest: t.rest });
export const callerSegs = (p: PrincipalPattern): Segs => ({ segs: p.segments.map((s) => (s === '*' ? null : s)), rest: p.rest });

/** Can some sequence match both? */
export function overlap(a: Segs, b: Segs): boolean {
  if (!a.rest && !b.rest && a.segs.length !== b.segs.length) return false;
  if (!a.rest && b.rest && a.segs.length <= b.segs.length) return false;
  if (a.rest && !b.rest && b.segs.length <= a.segs.length) return false;
  for (let i = 0; i < Math.min(a.segs.length, b.segs.length); i++) if (a.segs[i] !== null && b.segs[i] !== null && a.segs[i] !== b.segs[i]) return false;
  return true;
}

export interface CallerClass { id: string; label: string; trustDomain: string; patterns: Set<string> }
export interface PathClass { path: string; label: string; templates: Set<string> }

export const uniqueBy = <T>(xs: T[], key: (x: T) => string): T[] => [...new Map(xs.map((x) => [key(x), x])).values()];

/** Every class of the callers of trust domain `td` that `rules` tell apart (with `within`: only those it matches). */
export function callerClasses(rules: CheckedRule[], td: string, within?: PrincipalPattern): CallerClass[] {
  const own = uniqueBy(rules.flatMap((r) => r.from ?? []).filter((p) => p.trustDomain === td), (p) => p.text);
  const at = within ? own.findIndex((p) => p.text === within.text) : -1;
  return segmentClasses(own.map(callerSegs), 1).filter((c) => at < 0 || c.matches.includes(at)).map((c) => ({
    id: `spiffe://${td}/${c.segs.join('/')}`,
    label: c.matches.length ? c.matches.map((i) => own[i].text).join(' & ') : `other callers of ${td}`,
    trustDomain: td,
    patterns: new Set(c.matches.map((i) => own[i].text)),
  }));
}

/** Every class of paths that `rules` tell apart (with `within`: only those one of these templates matches). */
export function pathClasses(rules: CheckedRule[], within?: PathTemplate[] | null): PathClass[] {
  const templates = uniqueBy(rules.flatMap((r) => (r.to ?? []).flatMap((m) => m.paths ?? [])), (t) => t.text);
  const inside = new Set((within ?? []).map((t) => t.text));
  return segmentClasses(templates.map(pathSegs)).filter((c) => !within || c.matches.some((i) => inside.has(templates[i].text))).map((c) => ({
    path: `/${c.segs.join('/')}`,
    label: c.matches.length ? c.matches.map((i) => templates[i].text).join(' & ') : '(no template)',
    templates: new Set(c.matches.map((i) => templates[i].text)),
  }));
}

/** The methods `rules` name: in `to`, and compared with `request.method` in `when`. */
export function namedMethods(rules: CheckedRule[]): Set<string> {
  const named = new Set(rules.flatMap((r) => (r.to ?? []).flatMap((m) => m.methods ?? [])));
  const isMethod = (x: TExpr) => x.k === 'attr' && x.name === 'request.method';
  const visit = (e: TExpr): void => {
    if (e.k === 'cmp' && (isMethod(e.l) || isMethod(e.r))) for (const x of [e.l, e.r]) if (x.k === 'str') named.add(x.v);
    if (e.k === 'in' && isMethod(e.elem) && e.coll.k === 'list') for (const x of e.coll.items) if (x.k === 'str') named.add(x.v);
  };
  for (const r of rules) if (r.when) eachExpr(r.when, visit);
  return named;
}

/**
 * Every method `rules` name, plus one none of them does, standing for all the others (with
 * `within`: only those methods).
 */
export function methodClasses(rules: CheckedRule[], within?: string[] | null): string[] {
  if (within) return within;
  const named = namedMethods(rules);
  let other = 'OTHER';
  for (let n = 0; named.has(other); n++) other = `OTHER${'X'.repeat(n + 1)}`;
  return [...named, other];
}

/** Can one request match both `to` entries? */
export function entriesOverlap(a: RequestMatch | null, b: RequestMatch | null): boolean {
  if (!a || !b) return true;
  if (a.methods && b.methods && !a.methods.some((m) => b.methods!.includes(m))) return false;
  if (!a.paths || !b.paths) return true;
  return a.paths.some((x) => b.paths!.some((y) => overlap(pathSegs(x), pathSegs(y))));
}
