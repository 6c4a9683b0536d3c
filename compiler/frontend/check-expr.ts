/**
 * Name resolution and static typing of one parsed expression (untyped `Expr` → `TExpr`).
 * Every error is reported, not just the first; a sub-expression with an error yields null
 * and its parents stay quiet about it (no cascades).
 */
import type { AttrName, Diagnostic, RequestMap, Span, TExpr, Type } from './ast.ts';
import type { Expr } from './expr/ast.ts';
import { didYouMean } from './suggest.ts';
import { headerKeyError } from './headers.ts';

/** What the rule's path templates define, for `request.params.x`. */
export type ParamScope =
  | { ok: true; templates: { text: string; params: string[] }[] }
  | { ok: false; why: string };

export interface ExprContext {
  /** Span of an offset in the expression text. */
  at(offset: number): Span;
  params: ParamScope;
  /**
   * `inject` may name a parameter that only some of the rule's templates define (the
   * issue's own card-service example does: `/cards` and `/cards/{id}` inject `x-card`);
   * it is '' on the others, so a warning says so. `when` must not: a condition that reads
   * a parameter its template lacks is a bug, not a default.
   */
  partialParams?: boolean;
  diagnostics: Diagnostic[];
}

const ATTRS: Record<string, { name: AttrName; t: Type } | { map: RequestMap } | { claims: true }> = {
  'request.method': { name: 'request.method', t: 'string' },
  'request.path': { name: 'request.path', t: 'string' },
  'request.host': { name: 'request.host', t: 'string' },
  'request.headers': { map: 'headers' },
  'request.query': { map: 'query' },
  'request.params': { map: 'params' },
  'source.principal': { name: 'source.principal', t: 'string' },
  'user.sub': { name: 'user.sub', t: 'string' },
  'user.scopes': { name: 'user.scopes', t: 'list<string>' },
  'user.claims': { claims: true },
};
const ATTR_NAMES = Object.keys(ATTRS);
const ROOTS = ['request', 'source', 'user'];
const METHODS = ['startsWith', 'endsWith', 'contains'] as const;
const FUNCTIONS = ['size'];

/** An intermediate step of resolving `a.b['c']`: a namespace (`request`) or a value. */
type Ref = { ns: string; start: number } | { value: TExpr };

export function checkExpr(e: Expr, ctx: ExprContext): TExpr | null {
  const fail = (offset: number, message: string): null => {
    ctx.diagnostics.push({ severity: 'error', message, span: ctx.at(offset) });
    return null;
  };
  const span = ctx.at(e.start);

  switch (e.k) {
    case 'str':
      return { k: 'str', v: e.v, t: 'string', span };
    case 'num':
      return Number.isFinite(e.v) ? { k: 'num', v: e.v, t: 'number', span } : fail(e.start, 'number out of range');
    case 'bool':
      return { k: 'bool', v: e.v, t: 'bool', span };
    case 'list':
      return checkList(e.items, e.start, ctx, fail);
    case 'ident':
    case 'member':
    case 'index': {
      const ref = resolve(e, ctx, fail);
      if (!ref) return null;
      if ('value' in ref) return ref.value;
      return fail(e.start, `'${ref.ns}' is not a value; use one of ${ATTR_NAMES.filter((a) => a.startsWith(`${ref.ns}.`)).join(', ')}`);
    }
    case 'not': {
      const inner = checkExpr(e.e, ctx);
      if (!inner) return null;
      if (inner.t !== 'bool' && inner.t !== 'dyn') return fail(e.start, `'!' needs a bool, not ${inner.t}`);
      return { k: 'not', e: inner, t: inner.t, span };
    }
    case 'call':
      return checkCall(e, ctx, fail);
    case 'method':
      return checkMethod(e, ctx, fail);
    case 'binary': {
      const l = checkExpr(e.l, ctx);
      const r = checkExpr(e.r, ctx);
      if (!l || !r) return null;
      if (e.op === '&&' || e.op === '||') {
        const bad = [l, r].find((x) => x.t !== 'bool' && x.t !== 'dyn');
        if (bad) return fail(e.opStart, `'${e.op}' needs bool operands, not ${bad.t}`);
        return { k: e.op === '&&' ? 'and' : 'or', l, r, t: l.t === 'bool' && r.t === 'bool' ? 'bool' : 'dyn', span };
      }
      if (e.op === 'in') return checkIn(l, r, e.opStart, span, fail);
      const problem = comparisonError(e.op, l.t, r.t);
      if (problem) return fail(e.opStart, problem);
      return { k: 'cmp', op: e.op, l, r, t: 'bool', span };
    }
  }
}

type Fail = (offset: number, message: string) => null;

function checkList(items: Expr[], start: number, ctx: ExprContext, fail: Fail): TExpr | null {
  const typed = items.map((i) => checkExpr(i, ctx));
  if (typed.some((t) => !t)) return null;
  const ok = typed as TExpr[];
  const t = ok[0]?.t ?? 'string';
  if ((t !== 'string' && t !== 'number') || ok.some((i) => i.t !== t)) {
    return fail(start, 'list items must be all strings or all numbers');
  }
  return { k: 'list', items: ok, t: t === 'string' ? 'list<string>' : 'list<number>', span: ctx.at(start) };
}

/** Attribute paths: `request.method`, `request.headers['x-a']`, `user.claims.address.country`. */
function resolve(e: Expr, ctx: ExprContext, fail: Fail): Ref | null {
  if (e.k === 'ident') {
    if (ROOTS.includes(e.name)) return { ns: e.name, start: e.start };
    return fail(e.start, `unknown name '${e.name}'${didYouMean(e.name, [...ROOTS, 'true', 'false'])}`);
  }
  if (e.k === 'member') {
    if (e.target.k === 'ident' && !ROOTS.includes(e.target.name)) {
      const dotted = `${e.target.name}.${e.name}`;
      return fail(e.start, `unknown attribute '${dotted}'${didYouMean(dotted, ATTR_NAMES)}`);
    }
    const target = resolve(e.target, ctx, fail);
    if (!target) return null;
    return select(target, e.name, e.nameStart, e.nameStart, ctx, fail);
  }
  if (e.k === 'index') {
    const target = resolve(e.target, ctx, fail);
    const key = checkExpr(e.key, ctx);
    if (!target || !key) return null;
    if (key.k !== 'str') return fail(e.key.start, 'an index must be a constant string, e.g. [\'x-user-id\']');
    if ('ns' in target) return fail(e.key.start, `use '${target.ns}.${key.v}' instead of indexing '${target.ns}'`);
    return select(target, key.v, e.key.start, e.start, ctx, fail);
  }
  const value = checkExpr(e, ctx);
  return value && { value };
}

/** `target.key` or `target['key']`. `at` is where the key was written, `start` the whole expression. */
function select(target: Ref, key: string, at: number, start: number, ctx: ExprContext, fail: Fail): Ref | null {
  if ('ns' in target) {
    const dotted = `${target.ns}.${key}`;
    const attr = ATTRS[dotted];
    if (!attr) return fail(at, `unknown attribute '${dotted}'${didYouMean(dotted, ATTR_NAMES)}`);
    const span = ctx.at(target.start);
    if ('name' in attr) return { value: { k: 'attr', name: attr.name, t: attr.t, span } };
    if ('map' in attr) return { value: { k: 'map', map: attr.map, t: 'map<string>', span } };
    return { value: { k: 'claim', path: [], t: 'dyn', span } };
  }
  const v = target.value;
  if (v.k === 'claim') return { value: { ...v, path: [...v.path, key] } };
  if (v.k === 'map') {
    if (v.map === 'headers') {
      const bad = headerKeyError(key);
      if (bad) return fail(at, bad);
      return { value: { k: 'lookup', map: 'headers', key: key.toLowerCase(), t: 'string', span: ctx.at(start) } };
    }
    if (v.map === 'params') {
      const bad = paramError(key, ctx.params, ctx.partialParams ?? false);
      if (bad?.severity === 'error') return fail(at, bad.message);
      if (bad) ctx.diagnostics.push({ ...bad, span: ctx.at(at) });
    }
    return { value: { k: 'lookup', map: v.map, key, t: 'string', span: ctx.at(start) } };
  }
  return fail(at, `a ${v.t} has no field or key '${key}'`);
}

function paramError(name: string, scope: ParamScope, partial: boolean): Omit<Diagnostic, 'span'> | null {
  if (!scope.ok) return { severity: 'error', message: `request.params.${name} needs path templates: ${scope.why}` };
  const missing = scope.templates.find((t) => !t.params.includes(name));
  if (!missing) return null;
  if (partial && scope.templates.some((t) => t.params.includes(name)))
    return { severity: 'warning', message: `'${name}' is not a parameter of path template '${missing.text}': request.params.${name} is '' for requests matching it` };
  return { severity: 'error', message: `'${name}' is not a parameter of path template '${missing.text}' (request.params.${name} must be defined by every path template of the rule)` };
}

function checkCall(e: Extract<Expr, { k: 'call' }>, ctx: ExprContext, fail: Fail): TExpr | null {
  if (!FUNCTIONS.includes(e.fn)) {
    const hint = (METHODS as readonly string[]).includes(e.fn) ? `; it is a method: s.${e.fn}(x)` : didYouMean(e.fn, FUNCTIONS);
    return fail(e.start, `unknown function '${e.fn}'${hint}`);
  }
  const args = checkArgs(e.args, 1, e.fn, e.start, ctx, fail);
  if (!args) return null;
  const [arg] = args;
  if (arg.t === 'number' || arg.t === 'bool') return fail(e.args[0].start, `size() takes a string, list or map, not ${arg.t}`);
  return { k: 'size', e: arg, t: 'number', span: ctx.at(e.start) };
}

function checkMethod(e: Extract<Expr, { k: 'method' }>, ctx: ExprContext, fail: Fail): TExpr | null {
  const fn = METHODS.find((m) => m === e.fn);
  if (!fn) {
    const hint = FUNCTIONS.includes(e.fn) ? `; use ${e.fn}(x)` : didYouMean(e.fn, METHODS);
    return fail(e.nameStart, `unknown method '${e.fn}'${hint}`);
  }
  const target = checkExpr(e.target, ctx);
  const args = checkArgs(e.args, 1, fn, e.nameStart, ctx, fail);
  if (!target || !args) return null;
  if (target.t !== 'string' && target.t !== 'dyn') return fail(e.nameStart, `${fn}() applies to strings, not ${target.t}`);
  if (args[0].t !== 'string' && args[0].t !== 'dyn') return fail(e.args[0].start, `${fn}() takes a string argument, not ${args[0].t}`);
  return { k: 'call', fn, target, arg: args[0], t: 'bool', span: ctx.at(e.start) };
}

function checkArgs(args: Expr[], count: number, fn: string, at: number, ctx: ExprContext, fail: Fail): TExpr[] | null {
  const typed = args.map((a) => checkExpr(a, ctx));
  if (args.length !== count) return fail(at, `${fn}() takes exactly ${count} argument${count === 1 ? '' : 's'}, got ${args.length}`);
  return typed.every((t) => t) ? (typed as TExpr[]) : null;
}

function checkIn(l: TExpr, r: TExpr, at: number, span: Span, fail: Fail): TExpr | null {
  const elemOk: Partial<Record<Type, Type[]>> = {
    'list<string>': ['string', 'dyn'],
    'list<number>': ['number', 'dyn'],
    'map<string>': ['string', 'dyn'],
    dyn: ['string', 'number', 'bool', 'dyn'],
  };
  let coll = r;
  // An empty list literal takes the element's type.
  if (r.k === 'list' && r.items.length === 0 && l.t === 'number') coll = { ...r, t: 'list<number>' };
  const allowed = elemOk[coll.t];
  if (!allowed) return fail(at, `'in' needs a list or map on the right, not ${coll.t}`);
  if (!allowed.includes(l.t)) return fail(at, `'in' cannot look for a ${l.t} in a ${coll.t}`);
  // Header names are lowercase at run time; a constant key written otherwise would never match.
  const elem = coll.k === 'map' && coll.map === 'headers' && l.k === 'str' ? { ...l, v: l.v.toLowerCase() } : l;
  return { k: 'in', elem, coll, t: 'bool', span };
}

function comparisonError(op: string, l: Type, r: Type): string | null {
  const ordering = op !== '==' && op !== '!=';
  const comparable: Type[] = ordering ? ['string', 'number', 'dyn'] : ['string', 'number', 'bool', 'dyn'];
  const bad = [l, r].find((t) => !comparable.includes(t));
  if (bad) return `'${op}' cannot compare ${bad} values${ordering ? ' (only numbers and strings are ordered)' : ''}`;
  if (l !== r && l !== 'dyn' && r !== 'dyn') return `'${op}' cannot compare ${l} with ${r}`;
  return null;
}
