/**
 * The decision IR: what a compiled policy does for one request, as plain data that every
 * optimization pass reads and rewrites (`Program → Program`) and that `emit.ts` turns into
 * AssemblyScript. `printProgram` renders it for people (`palisade compile --emit ir`).
 *
 * Decision procedure the IR encodes (the runtime implements it, see filters/policy/engine.ts):
 *   1. a path the normalizer rejects → 400; no verified caller → 401;
 *   2. candidates = rules whose route (method bucket + path trie) and principal index match;
 *   3. any candidate deny whose `when` is absent, true or an error → 403 (first by index);
 *   4. else the first candidate allow (by index) whose `when` is true and whose injections
 *      all evaluate → forward with its injections; else 403.
 * Every header name any rule may inject is removed from every request before forwarding.
 */
import type { Diagnostic, Effect, Mode, PathTemplate, PrincipalPattern, Span, TExpr, Type } from '../frontend/ast.ts';
import { trustDomainOf } from '../frontend/spiffe.ts';

export interface Program {
  name: string;
  service: string;
  /** Trust domains besides the service's own whose callers are accepted. */
  federatesWith: string[];
  mode: Mode;
  source: { file: string; sha256: string };
  /** Live rules in policy order; the runtime refers to them by position in this array. */
  rules: Rule[];
  /** Values read from the request at most once each (filled by optimize/slots). */
  slots: Slot[];
  /** Header names removed from every request: every name some rule may inject. */
  strip: string[];
  /** Method buckets and path tries (filled by optimize/dispatch). */
  routes: RouteIndex | null;
  /** Principal index (filled by optimize/dispatch). */
  principals: PrincipalIndex | null;
  warnings: Diagnostic[];
}

export interface Rule {
  id: string;
  /** Position in the policy's `rules` array (ties and messages refer to it). */
  index: number;
  effect: Effect;
  span: Span;
  /** `null`: any authenticated caller. */
  from: PrincipalPattern[] | null;
  /** `null`: any request. One route per (request match × path template). */
  routes: Route[] | null;
  when: Expr | null;
  inject: { header: string; value: Expr; span: Span }[];
  /** Set by a pass that proved the rule can never apply; optimize/dce removes it. */
  never?: string;
}

export interface Route {
  /** `null`: any method. */
  methods: string[] | null;
  /** `null`: any path. */
  path: PathTemplate | null;
  span: Span;
}

/**
 * Expressions: the checked `TExpr` plus slot reads. A `slot` replaces a header/query
 * lookup or a claim path so each is read once per request however many rules use it.
 */
export type Expr =
  | Exclude<TExpr, { k: 'not' | 'and' | 'or' | 'cmp' | 'in' | 'call' | 'size' | 'list' }>
  | { k: 'slot'; slot: number; t: Type; span: Span }
  | { k: 'list'; items: Expr[]; t: 'list<string>' | 'list<number>'; span: Span }
  | { k: 'not'; e: Expr; t: 'bool' | 'dyn'; span: Span }
  | { k: 'and' | 'or'; l: Expr; r: Expr; t: 'bool' | 'dyn'; span: Span }
  | { k: 'cmp'; op: '==' | '!=' | '<' | '<=' | '>' | '>='; l: Expr; r: Expr; t: 'bool'; span: Span }
  | { k: 'in'; elem: Expr; coll: Expr; t: 'bool'; span: Span }
  | { k: 'call'; fn: 'startsWith' | 'endsWith' | 'contains'; target: Expr; arg: Expr; t: 'bool'; span: Span }
  | { k: 'size'; e: Expr; t: 'number'; span: Span };

export type Slot = { kind: 'header' | 'query'; key: string } | { kind: 'claim'; path: string[] };

/** A trie over path or SPIFFE-ID segments; the numbers are ids of whatever it indexes. */
export interface TrieNode {
  /** Literal children, keyed by the exact segment. */
  lits: Map<string, TrieNode>;
  /** `{param}` / `*` child: any one non-empty segment. */
  any: TrieNode | null;
  /** Entries that end exactly here. */
  exact: number[];
  /** Entries whose final `**` matches one or more further segments. */
  rest: number[];
}

/** What one route hit means: a rule, the methods it accepts, and where its path parameters sit. */
export interface Atom {
  rule: number;
  /** `null`: any method. */
  methods: string[] | null;
  /** Parameter name → segment position in the normalized path. */
  params: { name: string; pos: number }[];
}

export interface RouteIndex {
  /** Routes that differ only in their path (same rule, methods, parameters) share an atom. */
  atoms: Atom[];
  /** One trie over the normalized path's segments; a hit is kept when its atom accepts the method. */
  trie: TrieNode;
  /** Atoms of routes without a path. */
  anyPath: number[];
}

export interface PrincipalIndex {
  /** Per trust domain: whole IDs without wildcards hashed by their path, and a trie of patterns. */
  domains: Map<string, { exact: Map<string, number[]>; trie: TrieNode }>;
}

export function newTrie(): TrieNode {
  return { lits: new Map(), any: null, exact: [], rest: [] };
}

// ---------------------------------------------------------------------------------------
// Printing

export function printProgram(p: Program): string {
  const out: string[] = [];
  out.push(`program ${p.name}  service=${p.service}${p.federatesWith.length ? `  federatesWith=${p.federatesWith.join(',')}` : ''}  mode=${p.mode}  source=${p.source.file} sha256:${p.source.sha256.slice(0, 12)}`);
  out.push(`strip headers: ${p.strip.length ? p.strip.join(', ') : '(none)'}`);
  if (p.slots.length) {
    out.push('slots:');
    p.slots.forEach((s, i) => out.push(`  s${i} = ${printSlot(s)}`));
  }
  out.push('rules:');
  p.rules.forEach((r, i) => {
    out.push(`  r${i} ${r.effect} ${JSON.stringify(r.id)} (rules[${r.index}] ${r.span.line}:${r.span.col})`);
    out.push(`      from ${r.from ? r.from.map((f) => f.text).join(' | ') : `any caller of ${trustDomainOf(p.service)}`}`);
    out.push(`      to   ${r.routes ? r.routes.map(printRoute).join(' | ') : 'any request'}`);
    if (r.when) out.push(`      when ${printExpr(r.when, p)}`);
    for (const inj of r.inject) out.push(`      set  ${inj.header} = ${printExpr(inj.value, p)}`);
  });
  if (p.routes) {
    const r = p.routes;
    out.push('route dispatch (path trie; [methods] per hit):');
    const atoms = (ids: number[]) => ids.map((a) => `r${r.atoms[a].rule}${r.atoms[a].methods ? `[${r.atoms[a].methods!.join(',')}]` : ''}`).join(' ');
    if (r.anyPath.length) out.push(`  (any path) → ${atoms(r.anyPath)}`);
    printTrie(r.trie, '', '{}', atoms, out, '  ');
  }
  if (p.principals) {
    out.push('principal index:');
    const rules = (ids: number[]) => ids.map((x) => `r${x}`).join(' ');
    for (const [td, d] of p.principals.domains) {
      for (const [path, rs] of d.exact) out.push(`  = spiffe://${td}${path} → ${rules(rs)}`);
      printTrie(d.trie, `spiffe://${td}`, '*', rules, out, '  ');
    }
  }
  return out.join('\n') + '\n';
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

function printRoute(r: Route): string {
  return `${r.methods ? r.methods.join(',') : '*'} ${r.path ? r.path.text : '(any path)'}`;
}

function printSlot(s: Slot): string {
  if (s.kind === 'claim') return `user.claims${s.path.map((k) => `[${JSON.stringify(k)}]`).join('')}`;
  return `request.${s.kind === 'header' ? 'headers' : 'query'}[${JSON.stringify(s.key)}]`;
}

export function printExpr(e: Expr, p?: Program): string {
  const go = (x: Expr): string => printExpr(x, p);
  switch (e.k) {
    case 'str': return JSON.stringify(e.v);
    case 'num': return String(e.v);
    case 'bool': return String(e.v);
    case 'list': return `[${e.items.map(go).join(', ')}]`;
    case 'attr': return e.name;
    case 'map': return `request.${e.map}`;
    case 'lookup': return `request.${e.map}[${JSON.stringify(e.key)}]`;
    case 'claim': return `user.claims${e.path.map((k) => `[${JSON.stringify(k)}]`).join('')}`;
    case 'slot': return p ? `s${e.slot}:${printSlot(p.slots[e.slot])}` : `s${e.slot}`;
    case 'not': return `!${go(e.e)}`;
    case 'and': return `(${go(e.l)} && ${go(e.r)})`;
    case 'or': return `(${go(e.l)} || ${go(e.r)})`;
    case 'cmp': return `(${go(e.l)} ${e.op} ${go(e.r)})`;
    case 'in': return `(${go(e.elem)} in ${go(e.coll)})`;
    case 'call': return `${go(e.target)}.${e.fn}(${go(e.arg)})`;
    case 'size': return `size(${go(e.e)})`;
  }
}
