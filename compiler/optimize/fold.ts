/**
 * Constant folding of `when` and `inject` expressions, with one fact about the request
 * that the rule's routes guarantee: the set of methods it can see. A `when` that folds to
 * true disappears; one that folds to false marks the rule as never applying.
 *
 * Folding preserves run-time errors: `x && true` becomes `x` only when `x` is a static
 * bool (an error in `x` stays an error); a `dyn` operand is never folded away because its
 * run-time type check is part of the meaning.
 */
import type { Expr, Program, Rule } from '../ir/ir.ts';

type Const = string | number | boolean | (string | number)[];

export function fold(p: Program): Program {
  return { ...p, rules: p.rules.map(foldRule) };
}

function foldRule(r: Rule): Rule {
  const methods = methodFact(r);
  const go = (e: Expr): Expr => foldExpr(e, methods);
  const when = r.when ? go(r.when) : null;
  const inject = r.inject.map((i) => ({ ...i, value: go(i.value) }));
  if (when?.k === 'bool') {
    return when.v ? { ...r, when: null, inject } : { ...r, when, inject, never: r.never ?? 'its `when` is always false' };
  }
  return { ...r, when, inject };
}

/** The methods a request can have when the rule's routes match; `null`: any. */
function methodFact(r: Rule): Set<string> | null {
  if (!r.routes || r.routes.some((x) => x.methods === null)) return null;
  return new Set(r.routes.flatMap((x) => x.methods!));
}

export function constOf(e: Expr): Const | undefined {
  if (e.k === 'str' || e.k === 'num' || e.k === 'bool') return e.v;
  if (e.k === 'list') {
    const items = e.items.map(constOf);
    if (items.every((i) => typeof i === 'string' || typeof i === 'number')) return items as (string | number)[];
  }
  return undefined;
}

function lit(v: Const, like: Expr): Expr {
  const span = like.span;
  if (typeof v === 'boolean') return { k: 'bool', v, t: 'bool', span };
  if (typeof v === 'number') return { k: 'num', v, t: 'number', span };
  if (typeof v === 'string') return { k: 'str', v, t: 'string', span };
  throw new Error('lists are not produced by folding');
}

function foldExpr(e: Expr, methods: Set<string> | null): Expr {
  const go = (x: Expr): Expr => foldExpr(x, methods);
  switch (e.k) {
    case 'list': return { ...e, items: e.items.map(go) };
    case 'not': {
      const x = go(e.e);
      return x.k === 'bool' ? lit(!x.v, e) : { ...e, e: x };
    }
    case 'and':
    case 'or': {
      const l = go(e.l);
      const r = go(e.r);
      const absorbing = e.k === 'or'; // `true || _` is true, `false && _` is false
      if (l.k === 'bool') return l.v === absorbing ? lit(absorbing, e) : r.t === 'bool' ? r : { ...e, l, r };
      if (r.k === 'bool' && r.v !== absorbing && l.t === 'bool') return l;
      return { ...e, l, r };
    }
    case 'cmp': {
      const l = go(e.l);
      const r = go(e.r);
      const a = constOf(l);
      const b = constOf(r);
      if (a !== undefined && b !== undefined && !Array.isArray(a) && !Array.isArray(b) && typeof a === typeof b) {
        return lit(compare(e.op, a, b), e);
      }
      const known = methodCmp(e.op, l, r, methods) ?? methodCmp(e.op, r, l, methods);
      return known === undefined ? { ...e, l, r } : lit(known, e);
    }
    case 'in': {
      const elem = go(e.elem);
      const coll = go(e.coll);
      const x = constOf(elem);
      const c = constOf(coll);
      if (x !== undefined && Array.isArray(c)) return lit(c.includes(x as string | number), e);
      if (elem.k === 'attr' && elem.name === 'request.method' && methods && Array.isArray(c)) {
        const hits = [...methods].filter((m) => c.includes(m)).length;
        if (hits === 0) return lit(false, e);
        if (hits === methods.size) return lit(true, e);
      }
      return { ...e, elem, coll };
    }
    case 'call': {
      const target = go(e.target);
      const arg = go(e.arg);
      const s = constOf(target);
      const a = constOf(arg);
      if (typeof s === 'string' && typeof a === 'string') {
        return lit(e.fn === 'startsWith' ? s.startsWith(a) : e.fn === 'endsWith' ? s.endsWith(a) : s.includes(a), e);
      }
      return { ...e, target, arg };
    }
    case 'size': {
      const x = go(e.e);
      const c = constOf(x);
      if (typeof c === 'string') return lit(Buffer.byteLength(c, 'utf8'), e);
      if (Array.isArray(c)) return lit(c.length, e);
      return { ...e, e: x };
    }
    default:
      return e;
  }
}

/** `request.method == 'X'` when the rule's routes already decide it. */
function methodCmp(op: string, a: Expr, b: Expr, methods: Set<string> | null): boolean | undefined {
  if (!methods || a.k !== 'attr' || a.name !== 'request.method' || b.k !== 'str') return undefined;
  if (op !== '==' && op !== '!=') return undefined;
  const eq = !methods.has(b.v) ? false : methods.size === 1 ? true : undefined;
  return eq === undefined ? undefined : op === '==' ? eq : !eq;
}

/** Same semantics as the runtime: strings compare byte-wise as UTF-8. */
function compare(op: string, a: string | number | boolean, b: string | number | boolean): boolean {
  const c = typeof a === 'string' ? Buffer.compare(Buffer.from(a), Buffer.from(b as string)) : a === b ? 0 : a < b ? -1 : 1;
  const eq = typeof a === 'number' ? a === b : c === 0;
  switch (op) {
    case '==': return eq;
    case '!=': return !eq;
    case '<': return !eq && c < 0;
    case '<=': return eq || c < 0;
    case '>': return !eq && c > 0;
    default: return eq || c > 0;
  }
}
