/** Tokens of the `when`/`inject` expression language (chevrotain lexer). */
import { createToken, Lexer, type TokenType } from 'chevrotain';
import type { SyntaxError } from './ast.ts';

const ESCAPE = String.raw`\\(?:[\\'"nrt0]|u[0-9a-fA-F]{4})`;

export const WhiteSpace = createToken({ name: 'WhiteSpace', pattern: /[ \t\r\n]+/, group: Lexer.SKIPPED });
export const StringLit = createToken({
  name: 'StringLit',
  pattern: new RegExp(`'(?:[^'\\\\\\n]|${ESCAPE})*'|"(?:[^"\\\\\\n]|${ESCAPE})*"`),
  label: 'a string',
});
export const NumberLit = createToken({ name: 'NumberLit', pattern: /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/, label: 'a number' });
export const Identifier = createToken({ name: 'Identifier', pattern: /[A-Za-z_][A-Za-z0-9_]*/, label: 'a name' });
const keyword = (name: string, word: string) =>
  createToken({ name, pattern: new RegExp(`${word}\\b`), longer_alt: Identifier, label: `'${word}'` });
export const True = keyword('True', 'true');
export const False = keyword('False', 'false');

/** Comparison and membership operators share one precedence level, hence one category. */
export const CmpOp = createToken({ name: 'CmpOp', pattern: Lexer.NA, label: 'a comparison' });
const op = (name: string, image: string, categories: TokenType[] = []) =>
  createToken({ name, pattern: image, label: `'${image}'`, categories });
export const In = createToken({ name: 'In', pattern: /in\b/, longer_alt: Identifier, label: "'in'", categories: [CmpOp] });
export const Eq = op('Eq', '==', [CmpOp]);
export const Ne = op('Ne', '!=', [CmpOp]);
export const Le = op('Le', '<=', [CmpOp]);
export const Ge = op('Ge', '>=', [CmpOp]);
export const Lt = op('Lt', '<', [CmpOp]);
export const Gt = op('Gt', '>', [CmpOp]);
export const OrOp = op('OrOp', '||');
export const AndOp = op('AndOp', '&&');
export const Not = op('Not', '!');
export const LParen = op('LParen', '(');
export const RParen = op('RParen', ')');
export const LBracket = op('LBracket', '[');
export const RBracket = op('RBracket', ']');
export const Comma = op('Comma', ',');
export const Dot = op('Dot', '.');

// Order matters: longer operators before their prefixes, keywords before identifiers.
export const allTokens = [
  WhiteSpace, StringLit, NumberLit, True, False, In, Identifier,
  Eq, Ne, Le, Ge, Lt, Gt, OrOp, AndOp, Not, LParen, RParen, LBracket, RBracket, Comma, Dot, CmpOp,
];

const lexer = new Lexer(allTokens, { positionTracking: 'onlyOffset', ensureOptimizations: false });

export function tokenize(text: string): { tokens: ReturnType<Lexer['tokenize']>['tokens']; error: SyntaxError | null } {
  const result = lexer.tokenize(text);
  const first = result.errors[0];
  return { tokens: result.tokens, error: first ? lexError(text, first.offset) : null };
}

/** Says what is wrong at the first character the lexer could not take. */
function lexError(text: string, offset: number): SyntaxError {
  const c = text[offset];
  if (c === "'" || c === '"') return stringError(text, offset);
  if (c === '=') return { offset, message: "unexpected '='; use '==' to compare" };
  if (c === '&' || c === '|') return { offset, message: `unexpected '${c}'; use '${c}${c}'` };
  return { offset, message: `unexpected character ${JSON.stringify(c)}` };
}

/** A string literal the lexer refused: a bad escape, or no closing quote on its line. */
function stringError(text: string, offset: number): SyntaxError {
  const valid = new RegExp(`^${ESCAPE}`);
  for (let i = offset + 1; i < text.length && text[i] !== '\n'; i++) {
    if (text[i] === text[offset]) break;
    if (text[i] !== '\\') continue;
    const escape = valid.exec(text.slice(i));
    if (!escape) return { offset: i, message: `invalid escape '${text.slice(i, i + 2)}' in string (use \\\\ \\' \\" \\n \\r \\t \\0 or \\uXXXX)` };
    i += escape[0].length - 1;
  }
  return { offset, message: 'unterminated string' };
}

/** The value of a string literal token (quotes removed, escapes decoded). */
export function decodeString(image: string): string {
  return image.slice(1, -1).replace(/\\(u[0-9a-fA-F]{4}|.)/g, (_, e: string) =>
    e.length > 1 ? String.fromCharCode(parseInt(e.slice(1), 16)) : ({ n: '\n', r: '\r', t: '\t', '0': '\0' } as Record<string, string>)[e] ?? e,
  );
}
