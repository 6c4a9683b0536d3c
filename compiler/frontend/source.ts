/**
 * A policy file as JSON with source positions. Every later stage reports problems as
 * `file:line:col` plus a JSON pointer, so this module keeps the momoa tree (which carries
 * locations) and answers "where is the value at this pointer" and "where is character n of
 * this string value" (expressions live inside JSON strings, escapes and all).
 */
import { parse, evaluate } from '@humanwhocodes/momoa';
import type { ValueNode, StringNode, MemberNode, Token } from '@humanwhocodes/momoa';
import type { Diagnostic, Span } from './ast.ts';

export type { ValueNode, StringNode, MemberNode };

export interface Source {
  file: string;
  text: string;
  root: ValueNode;
  /** The document as plain JSON (what JSON Schema validation sees). */
  value: unknown;
}

/**
 * A policy nests six levels (document, rules, rule, to, match, paths); this bounds every
 * recursive walk of the tree (momoa, ajv, the checker) far below the stack limit, whatever
 * stack depth the caller starts from.
 */
export const MAX_JSON_DEPTH = 64;

/** Parses `text`; on invalid JSON, nesting deeper than MAX_JSON_DEPTH or duplicate keys returns diagnostics and no source. */
export function parseSource(file: string, text: string): { source: Source | null; diagnostics: Diagnostic[] } {
  // A leading byte-order mark is not JSON; a space keeps every later offset unchanged.
  // Lines end at LF (what editors, grep -n and sed count); momoa also ends one at a lone
  // CR, so a lone CR, JSON whitespace like the space, is handed to it as a space.
  const body = text.replace(/^\uFEFF/, ' ').replace(/\r(?!\n)/g, ' ');
  const deep = tooDeep(file, body);
  if (deep) return { source: null, diagnostics: [deep] };
  let root: ValueNode;
  let tokens: Token[];
  try {
    ({ body: root, tokens = [] } = parse(body, { mode: 'json', ranges: true, tokens: true }));
  } catch (err) {
    return { source: null, diagnostics: [jsonSyntaxError(file, body, err)] };
  }
  const control = rawControlCharacter(file, text, tokens);
  if (control) return { source: null, diagnostics: [control] };
  const diagnostics = duplicateKeys(file, root, '');
  if (diagnostics.length) return { source: null, diagnostics };
  return { source: { file, text, root, value: evaluate(root) }, diagnostics };
}

function jsonSyntaxError(file: string, text: string, err: unknown): Diagnostic {
  const e = err as { message?: string; line?: number; column?: number };
  const line = typeof e.line === 'number' ? e.line : 1;
  const col = typeof e.column === 'number' ? e.column : 1;
  // momoa appends "(line:col)" to its messages; the position is already in front.
  const raw = String(e.message ?? err).replace(/\s*\(\d+:\d+\)\s*$/, '');
  const message = text.trim() === '' ? 'empty file: expected a JSON object' : `invalid JSON: ${describeMomoa(raw)}`;
  return { severity: 'error', message, span: { file, line, col, pointer: '' } };
}

/** The first '[' or '{' nested deeper than MAX_JSON_DEPTH (one pass, outside strings), located. */
function tooDeep(file: string, text: string): Diagnostic | null {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      if (++depth > MAX_JSON_DEPTH) {
        const lineStart = text.lastIndexOf('\n', i) + 1;
        const line = 1 + (text.slice(0, lineStart).match(/\n/g)?.length ?? 0);
        const message = `invalid JSON: nested more than ${MAX_JSON_DEPTH} levels deep`;
        return { severity: 'error', message, span: { file, line, col: i - lineStart + 1, pointer: '' } };
      }
    } else if (c === ']' || c === '}') depth--;
  }
  return null;
}

const ESCAPES: Record<string, string> = { '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * JSON strings may not hold U+0000 to U+001F unescaped (RFC 8259 section 7), but momoa
 * accepts them; every later stage relies on a string being on one line.
 */
function rawControlCharacter(file: string, text: string, tokens: Token[]): Diagnostic | null {
  for (const t of tokens) {
    if (t.type !== 'String' || !t.range) continue;
    const at = text.slice(t.range[0], t.range[1]).search(/[\u0000-\u001f]/);
    if (at < 0) continue;
    const c = text[t.range[0] + at];
    const escaped = ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
    const message = `invalid JSON: control character U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')} in a string; write it as ${escaped}`;
    // The first control character of the token: no line break precedes it in the token.
    return { severity: 'error', message, span: { file, line: t.loc.start.line, col: t.loc.start.column + at, pointer: '' } };
  }
  return null;
}

/** momoa speaks of token types ("RBrace"); people read characters. */
function describeMomoa(message: string): string {
  const names: Record<string, string> = {
    LBrace: "'{'", RBrace: "'}'", LBracket: "'['", RBracket: "']'", Colon: "':'", Comma: "','",
    String: 'a string', Number: 'a number', Boolean: 'true/false', Null: 'null', EOF: 'end of file',
  };
  return message.replace(/\b(LBrace|RBrace|LBracket|RBracket|Colon|Comma|String|Number|Boolean|Null|EOF)\b/g, (m) => names[m] ?? m);
}

/** JSON allows repeated keys but parsers disagree on which wins: a policy must be unambiguous. */
function duplicateKeys(file: string, node: ValueNode, pointer: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  if (node.type === 'Object') {
    const seen = new Map<string, MemberNode>();
    for (const m of node.members) {
      const key = (m.name as StringNode).value;
      const child = `${pointer}/${escapePointer(key)}`;
      const first = seen.get(key);
      if (first) {
        out.push({
          severity: 'error',
          message: `duplicate key '${key}' (first at line ${first.name.loc.start.line})`,
          span: { file, line: m.name.loc.start.line, col: m.name.loc.start.column, pointer: child },
        });
      } else seen.set(key, m);
      out.push(...duplicateKeys(file, m.value, child));
    }
  } else if (node.type === 'Array') {
    node.elements.forEach((e, i) => out.push(...duplicateKeys(file, e.value, `${pointer}/${i}`)));
  }
  return out;
}

export function escapePointer(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function splitPointer(pointer: string): string[] {
  return pointer === '' ? [] : pointer.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** The node at `pointer`, or the deepest existing ancestor (so a missing value points at its parent). */
export function nodeAt(root: ValueNode, pointer: string): ValueNode {
  let node = root;
  for (const token of splitPointer(pointer)) {
    const next =
      node.type === 'Object'
        ? node.members.find((m) => (m.name as StringNode).value === token)?.value
        : node.type === 'Array'
          ? node.elements[Number(token)]?.value
          : undefined;
    if (!next) break;
    node = next;
  }
  return node;
}

/** The member (key and value) named `key` of the object at `pointer`, if any. */
export function memberAt(root: ValueNode, pointer: string, key: string): MemberNode | undefined {
  const node = nodeAt(root, pointer);
  return node.type === 'Object' ? node.members.find((m) => (m.name as StringNode).value === key) : undefined;
}

export function spanAt(src: Source, pointer: string): Span {
  const { line, column } = nodeAt(src.root, pointer).loc.start;
  return { file: src.file, line, col: column, pointer };
}

/**
 * The span of character `index` of a string value's decoded text. JSON strings cannot hold a
 * raw line break, so the answer is on the string's line; escapes (`\"`, `\u0041`) take more
 * source characters than they decode to, which is why this walks the raw text.
 */
export function spanInString(src: Source, node: StringNode, index: number, pointer: string): Span {
  const start = node.range?.[0] ?? 0;
  const raw = src.text.slice(start + 1, (node.range?.[1] ?? start + 1) - 1);
  let rawPos = 0;
  for (let decoded = 0; decoded < index && rawPos < raw.length; decoded++) {
    rawPos += raw[rawPos] !== '\\' ? 1 : raw[rawPos + 1] === 'u' ? 6 : 2;
  }
  return { file: src.file, line: node.loc.start.line, col: node.loc.start.column + 1 + rawPos, pointer };
}
