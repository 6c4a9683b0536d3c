import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseExpression, MAX_NESTING } from '../../../compiler/frontend/expr/parser.ts';
import { tokenize, decodeString } from '../../../compiler/frontend/expr/lexer.ts';
import fc from 'fast-check';
import type { BinaryOp, Expr } from '../../../compiler/frontend/expr/ast.ts';

/** A compact rendering of the tree that makes grouping visible. */
function show(e: Expr): string {
  switch (e.k) {
    case 'str': return JSON.stringify(e.v);
    case 'num': case 'bool': return String(e.v);
    case 'list': return `[${e.items.map(show).join(', ')}]`;
    case 'ident': return e.name;
    case 'member': return `${show(e.target)}.${e.name}`;
    case 'index': return `${show(e.target)}[${show(e.key)}]`;
    case 'call': return `${e.fn}(${e.args.map(show).join(', ')})`;
    case 'method': return `${show(e.target)}.${e.fn}(${e.args.map(show).join(', ')})`;
    case 'not': return `!${show(e.e)}`;
    case 'binary': return `(${show(e.l)} ${e.op} ${show(e.r)})`;
  }
}

function parsed(text: string): string {
  const r = parseExpression(text);
  if (!r.expr) throw new Error(`unexpected error: ${r.error?.message}`);
  return show(r.expr);
}

test('lexer: tokens, keywords versus identifiers, skipped whitespace', () => {
  const { tokens, error } = tokenize("a in inside && !true\n|| 'x' <= -1.5e2");
  assert.is(error, null);
  assert.equal(tokens.map((t) => t.tokenType.name), ['Identifier', 'In', 'Identifier', 'AndOp', 'Not', 'True', 'OrOp', 'StringLit', 'Le', 'NumberLit']);
});

test('string literals: both quotes and escapes', () => {
  assert.is(decodeString(String.raw`'it\'s \"q\" \\ \n\t\u0041'`), 'it\'s "q" \\ \n\tA');
  assert.is(parsed(`"a'b" == 'a"b'`), `("a'b" == "a\\"b")`);
});

test('precedence: || < && < comparison/in < unary ! < postfix', () => {
  assert.is(parsed('a || b && c'), '(a || (b && c))');
  assert.is(parsed('a && b || c'), '((a && b) || c)');
  assert.is(parsed('!a == b'), '(!a == b)');
  assert.is(parsed('!(a == b)'), '!(a == b)');
  assert.is(parsed("'x' in a.b && c < 3"), '(("x" in a.b) && (c < 3))');
  assert.is(parsed('a || b || c'), '((a || b) || c)');
  assert.is(parsed('!!a.b[\'c\'].startsWith("d")'), '!!a.b["c"].startsWith("d")');
  assert.is(parsed('size(a.b) >= 2 == true'), '((size(a.b) >= 2) == true)');
  assert.is(parsed('[1, 2.5, -3] != []'), '([1, 2.5, -3] != [])');
});

test('syntax errors carry the offset of the offending token', () => {
  const cases: [string, number, RegExp][] = [
    ['(a || b', 7, /expected '\)' but found end of expression/],
    ['a.b(', 4, /expected '\)'/],
    ['a b', 2, /unexpected 'b' after a complete expression/],
    ['a = b', 2, /use '==' to compare/],
    ['a & b', 2, /use '&&'/],
    ["'abc", 0, /unterminated string/],
    ["'a\\q'", 2, /invalid escape '\\q'/],
    ['[1, 2', 5, /expected '\]'/],
    ['a in [1,]', 8, /expected a value .* but found '\]'/],
    ['a.', 2, /expected a name but found end of expression/],
    ['a #', 2, /unexpected character "#"/],
    ['', 0, /empty expression/],
    ['a ==', 4, /expected a value/],
  ];
  for (const [text, offset, message] of cases) {
    const r = parseExpression(text);
    assert.is(r.expr, null, text);
    assert.is(r.error?.offset, offset, text);
    assert.match(r.error?.message ?? '', message, text);
  }
});

test('nesting and length are bounded instead of overflowing the stack', () => {
  assert.ok(parseExpression('('.repeat(MAX_NESTING) + 'a' + ')'.repeat(MAX_NESTING)).expr);
  const deep = parseExpression('('.repeat(100_000) + 'a' + ')'.repeat(100_000));
  assert.match(deep.error?.message ?? '', /longer than|nested more than/);
  assert.match(parseExpression('!'.repeat(1000) + 'a').error?.message ?? '', /nested more than/);
});

/** Binding strength: `||` 1, `&&` 2, comparisons and `in` 3, `!` 4, atoms 5. */
const PREC: Record<BinaryOp, number> = { '||': 1, '&&': 2, '==': 3, '!=': 3, '<': 3, '<=': 3, '>': 3, '>=': 3, in: 3 };
const prec = (e: Expr) => (e.k === 'binary' ? PREC[e.op] : e.k === 'not' ? 4 : 5);

/** Prints with the fewest parentheses the grammar needs (left-associative binaries). */
function minimal(e: Expr): string {
  const wrap = (x: Expr, need: boolean) => (need ? `(${minimal(x)})` : minimal(x));
  if (e.k === 'not') return `!${wrap(e.e, prec(e.e) < 4)}`;
  if (e.k === 'binary') return `${wrap(e.l, prec(e.l) < PREC[e.op])} ${e.op} ${wrap(e.r, prec(e.r) <= PREC[e.op])}`;
  return show(e);
}

const atom = fc.oneof(
  fc.constantFrom('a', 'b', 'c').map((name): Expr => ({ k: 'ident', name, start: 0 })),
  fc.integer({ min: 0, max: 99 }).map((v): Expr => ({ k: 'num', v, start: 0 })),
  fc.constantFrom('x', 'y').map((v): Expr => ({ k: 'str', v, start: 0 })),
);
const tree = fc.letrec<{ e: Expr }>((t) => ({
  e: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    atom,
    t('e').map((e): Expr => ({ k: 'not', e, start: 0 })),
    fc.tuple(fc.constantFrom(...(Object.keys(PREC) as BinaryOp[])), t('e'), t('e'))
      .map(([op, l, r]): Expr => ({ k: 'binary', op, l, r, start: 0, opStart: 0 })),
  ),
})).e;

test('property: printing with minimal parentheses and parsing back gives the same tree', () => {
  fc.assert(fc.property(tree, (e) => parsed(minimal(e)) === show(e)), { numRuns: 500 });
});

test.run();
