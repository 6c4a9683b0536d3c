/**
 * The decision IR: what a compiled policy does for one request, as plain data that every
 * optimization pass reads and rewrites (`Program → Program`) and that the planning step
 * (compiler/plan/) completes into the `Plan` the back end turns into AssemblyScript. It holds
 * only what the policy says: no planning results and no diagnostics (passes report those
 * beside the program). `printRules` renders it for people (`palisade compile --emit ir`).
 *
 * Decision procedure the IR encodes (the runtime implements it, see filters/policy/engine.ts):
 *   1. a path the normalizer rejects → 400; no verified caller → 401;
 *   2. candidates = rules whose route (method bucket + path trie) and principal index match;
 *   3. any candidate deny whose `when` is absent, true or an error → 403 (first by index);
 *   4. else the first candidate allow (by index) whose `when` is true and whose injections
 *      all evaluate → forward with its injections; else 403.
 * Every header name any rule may inject is removed from every request before forwarding.
 */
import type { Effect, Mode, PathTemplate, PrincipalPattern, Span, TExpr, Type } from '../frontend/ast.ts';
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
  /** Header names removed from every request: every name some rule may inject. */
  strip: string[];
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
 * lookup or a claim path so each is read once per request however many rules use it; only
 * the planning step (compiler/plan/slots.ts) writes them, numbering the plan's `slots`.
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

// ---------------------------------------------------------------------------------------
// Printing

/** The program's first lines: what it is, and the headers it strips. */
export function printHeader(p: Program): string[] {
  return [
    `program ${p.name}  service=${p.service}${p.federatesWith.length ? `  federatesWith=${p.federatesWith.join(',')}` : ''}  mode=${p.mode}  source=${p.source.file} sha256:${p.source.sha256.slice(0, 12)}`,
    `strip headers: ${p.strip.length ? p.strip.join(', ') : '(none)'}`,
  ];
}

/** The rules, one block each; `slotName` says what a slot read reads (the plan knows). */
export function printRules(p: Program, slotName?: (slot: number) => string): string[] {
  const out = ['rules:'];
  p.rules.forEach((r, i) => {
    out.push(`  r${i} ${r.effect} ${JSON.stringify(r.id)} (${ruleAt(p, r)} ${r.span.line}:${r.span.col})`);
    out.push(`      from ${r.from ? r.from.map((f) => f.text).join(' | ') : `any caller of ${trustDomainOf(p.service)}`}`);
    out.push(`      to   ${r.routes ? r.routes.map(printRoute).join(' | ') : 'any request'}`);
    if (r.when) out.push(`      when ${printExpr(r.when, slotName)}`);
    for (const inj of r.inject) out.push(`      set  ${inj.header} = ${printExpr(inj.value, slotName)}`);
  });
  return out;
}

/**
 * Where a rule is written, for messages: `rules[N]`, its position in its file's `rules` (the
 * span's pointer: in a composed policy `index` counts the rules of every layer), after the
 * file's name when a layer above the service's (compiler/compose/) has it.
 */
export function ruleAt(p: { source: { file: string } }, r: { span: Span }): string {
  const { file, pointer } = r.span;
  return `${file === p.source.file ? '' : `${file} `}rules[${pointer.split('/')[2]}]`;
}

function printRoute(r: Route): string {
  return `${r.methods ? r.methods.join(',') : '*'} ${r.path ? r.path.text : '(any path)'}`;
}

export function printExpr(e: Expr, slotName?: (slot: number) => string): string {
  const go = (x: Expr): string => printExpr(x, slotName);
  switch (e.k) {
    case 'str': return JSON.stringify(e.v);
    case 'num': return String(e.v);
    case 'bool': return String(e.v);
    case 'list': return `[${e.items.map(go).join(', ')}]`;
    case 'attr': return e.name;
    case 'map': return `request.${e.map}`;
    case 'lookup': return `request.${e.map}[${JSON.stringify(e.key)}]`;
    case 'claim': return `user.claims${e.path.map((k) => `[${JSON.stringify(k)}]`).join('')}`;
    case 'slot': return slotName ? `s${e.slot}:${slotName(e.slot)}` : `s${e.slot}`;
    case 'not': return `!${go(e.e)}`;
    case 'and': return `(${go(e.l)} && ${go(e.r)})`;
    case 'or': return `(${go(e.l)} || ${go(e.r)})`;
    case 'cmp': return `(${go(e.l)} ${e.op} ${go(e.r)})`;
    case 'in': return `(${go(e.elem)} in ${go(e.coll)})`;
    case 'call': return `${go(e.target)}.${e.fn}(${go(e.arg)})`;
    case 'size': return `size(${go(e.e)})`;
  }
}
