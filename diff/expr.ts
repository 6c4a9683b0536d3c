import type { TExpr } from '../compiler/frontend/ast.ts';

/** Calls `fn` on `e` and every expression inside it (operands, list items, call arguments). */
export function eachExpr(e: TExpr, fn: (x: TExpr) => void): void {
  fn(e);
  const isExpr = (c: unknown): c is TExpr => typeof c === 'object' && c !== null && 'k' in c;
  for (const child of Object.values(e)) {
    if (isExpr(child)) eachExpr(child, fn);
    else if (Array.isArray(child)) for (const c of child) if (isExpr(c)) eachExpr(c, fn);
  }
}
