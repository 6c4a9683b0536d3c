/**
 * Parser for `when`/`inject` expressions (chevrotain, embedded actions → untyped AST).
 * Precedence, loosest first: `||`, `&&`, comparisons and `in`, unary `!`, then postfix
 * member access, indexing and method calls. Binary operators associate to the left.
 */
import { EmbeddedActionsParser, EOF, type IParserErrorMessageProvider, type IToken, type TokenType } from 'chevrotain';
import type { BinaryOp, Expr, SyntaxError } from './ast.ts';
import {
  allTokens, tokenize, decodeString, AndOp, CmpOp, Comma, Dot, False, Identifier, LBracket, LParen, Not,
  NumberLit, OrOp, RBracket, RParen, StringLit, True,
} from './lexer.ts';

const describe = (t: TokenType) => (t === EOF ? 'end of expression' : (t.LABEL ?? t.name));
const found = (t: IToken) => (t.tokenType === EOF ? 'end of expression' : `'${t.image}'`);

/** Messages in the words a policy author uses ("expected ')'"), not grammar rule names. */
const messages: IParserErrorMessageProvider = {
  buildMismatchTokenMessage: ({ expected, actual }) => `expected ${describe(expected)} but found ${found(actual)}`,
  buildNotAllInputParsedMessage: ({ firstRedundant }) => `unexpected ${found(firstRedundant)} after a complete expression`,
  buildNoViableAltMessage: ({ actual }) =>
    `expected a value (string, number, true/false, list, attribute or '(') but found ${found(actual[0])}`,
  buildEarlyExitMessage: ({ actual }) => `expected a value but found ${found(actual[0])}`,
};

class ExprParser extends EmbeddedActionsParser {
  constructor() {
    super(allTokens, { errorMessageProvider: messages, recoveryEnabled: false });
    this.performSelfAnalysis();
  }

  expression = this.RULE('expression', (): Expr => this.SUBRULE(this.disjunction));

  disjunction = this.RULE('disjunction', (): Expr => this.leftAssoc(OrOp, () => this.SUBRULE(this.conjunction), () => this.SUBRULE2(this.conjunction)));
  conjunction = this.RULE('conjunction', (): Expr => this.leftAssoc(AndOp, () => this.SUBRULE(this.comparison), () => this.SUBRULE2(this.comparison)));
  comparison = this.RULE('comparison', (): Expr => this.leftAssoc(CmpOp, () => this.SUBRULE(this.unary), () => this.SUBRULE2(this.unary)));

  private leftAssoc(opToken: TokenType, first: () => Expr, next: () => Expr): Expr {
    let l = first();
    this.MANY(() => {
      const op = this.CONSUME(opToken);
      const r = next();
      this.ACTION(() => {
        l = { k: 'binary', op: op.image as BinaryOp, l, r, start: l.start, opStart: op.startOffset };
      });
    });
    return l;
  }

  unary = this.RULE('unary', (): Expr =>
    this.OR([
      {
        ALT: () => {
          const bang = this.CONSUME(Not);
          const e = this.SUBRULE(this.unary);
          return this.ACTION((): Expr => ({ k: 'not', e, start: bang.startOffset }));
        },
      },
      { ALT: () => this.SUBRULE(this.postfix) },
    ]),
  );

  postfix = this.RULE('postfix', (): Expr => {
    let e = this.SUBRULE(this.primary);
    this.MANY(() =>
      this.OR([
        {
          ALT: () => {
            this.CONSUME(Dot);
            const name = this.CONSUME(Identifier);
            const args = this.OPTION(() => this.SUBRULE(this.args));
            this.ACTION(() => {
              const base = { target: e, start: e.start, nameStart: name.startOffset };
              e = args ? { k: 'method', fn: name.image, args, ...base } : { k: 'member', name: name.image, ...base };
            });
          },
        },
        {
          ALT: () => {
            this.CONSUME(LBracket);
            const key = this.SUBRULE(this.expression);
            this.CONSUME(RBracket);
            this.ACTION(() => {
              e = { k: 'index', target: e, key, start: e.start };
            });
          },
        },
      ]),
    );
    return e;
  });

  args = this.RULE('args', (): Expr[] => {
    const items: Expr[] = [];
    this.CONSUME(LParen);
    this.MANY_SEP({ SEP: Comma, DEF: () => items.push(this.SUBRULE(this.expression)) });
    this.CONSUME(RParen);
    return items;
  });

  primary = this.RULE('primary', (): Expr =>
    this.OR([
      { ALT: () => this.literal(StringLit, (image) => ({ k: 'str', v: decodeString(image) })) },
      { ALT: () => this.literal(NumberLit, (image) => ({ k: 'num', v: Number(image) })) },
      { ALT: () => this.literal(True, () => ({ k: 'bool', v: true })) },
      { ALT: () => this.literal(False, () => ({ k: 'bool', v: false })) },
      {
        ALT: () => {
          const open = this.CONSUME(LBracket);
          const items: Expr[] = [];
          this.MANY_SEP({ SEP: Comma, DEF: () => items.push(this.SUBRULE2(this.expression)) });
          this.CONSUME(RBracket);
          return this.ACTION((): Expr => ({ k: 'list', items, start: open.startOffset }));
        },
      },
      {
        ALT: () => {
          const name = this.CONSUME(Identifier);
          const args = this.OPTION(() => this.SUBRULE2(this.args));
          return this.ACTION((): Expr =>
            args ? { k: 'call', fn: name.image, args, start: name.startOffset } : { k: 'ident', name: name.image, start: name.startOffset },
          );
        },
      },
      {
        ALT: () => {
          const open = this.CONSUME(LParen);
          const e = this.SUBRULE3(this.expression);
          this.CONSUME2(RParen);
          // The parenthesized expression starts at '(' so diagnostics point at what was written.
          return this.ACTION((): Expr => ({ ...e, start: open.startOffset }));
        },
      },
    ]),
  );

  private literal(token: TokenType, make: (image: string) => Omit<Expr, 'start'> & { k: string }): Expr {
    const t = this.CONSUME(token);
    return this.ACTION(() => ({ ...make(t.image), start: t.startOffset }) as Expr);
  }
}

const parser = new ExprParser();

/** Bounds that keep parsing (and every later recursive pass) far from the stack limit. */
export const MAX_EXPRESSION_LENGTH = 4096;
export const MAX_NESTING = 64;

/** Parses one expression; on failure returns the first syntax error and no tree. */
export function parseExpression(text: string): { expr: Expr | null; error: SyntaxError | null } {
  if (text.length > MAX_EXPRESSION_LENGTH) {
    return { expr: null, error: { offset: 0, message: `expression longer than ${MAX_EXPRESSION_LENGTH} characters` } };
  }
  const lexed = tokenize(text);
  if (lexed.error) return { expr: null, error: lexed.error };
  if (lexed.tokens.length === 0) return { expr: null, error: { offset: 0, message: 'empty expression' } };
  const deep = tooDeep(lexed.tokens);
  if (deep) return { expr: null, error: deep };
  parser.input = lexed.tokens;
  const expr = parser.expression();
  const first = parser.errors[0];
  if (!first) return { expr, error: null };
  const offset = Number.isNaN(first.token.startOffset) ? text.length : first.token.startOffset;
  return { expr: null, error: { offset, message: first.message } };
}

/** The first token that nests brackets, parentheses or `!` more than MAX_NESTING deep. */
function tooDeep(tokens: IToken[]): SyntaxError | null {
  let depth = 0;
  let bangs = 0;
  for (const t of tokens) {
    if (t.tokenType === LParen || t.tokenType === LBracket) depth++;
    else if (t.tokenType === RParen || t.tokenType === RBracket) depth--;
    bangs = t.tokenType === Not ? bangs + 1 : 0;
    if (depth + bangs > MAX_NESTING) return { offset: t.startOffset, message: `expression nested more than ${MAX_NESTING} levels deep` };
  }
  return null;
}
