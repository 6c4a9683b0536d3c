/**
 * A policy file as JSON with source positions. Every later stage reports problems as
 * `file:line:col` plus a JSON pointer, so this module keeps the momoa tree (which carries
 * locations) and answers "where is the value at this pointer" and "where is character n of
 * this string value" (expressions live inside JSON strings, escapes and all).
 */
import { parse, evaluate } from '@humanwhocodes/momoa';
import type { ValueNode, StringNode, MemberNode } from '@humanwhocodes/momoa';
import type { Diagnostic, Span } from './ast.ts';

export type { ValueNode, StringNode, MemberNode };

export interface Source {
  file: string;
  text: string;
  root: ValueNode;
  /** The document as plain JSON (what JSON Schema validation sees). */
  value: unknown;
}

/** Parses `text`; on invalid JSON or duplicate keys returns diagnostics and no source. */
export function parseSource(file: string, text: string): { source: Source | null; diagnostics: Diagnostic[] } {
  // A leading byte-order mark is not JSON; a space keeps every later offset unchanged.
  const body = text.charCodeAt(0) === 0xfeff ? ` ${text.slice(1)}` : text;
  let root: ValueNode;
  try {
    root = parse(body, { mode: 'json', ranges: true }).body;
  } catch (err) {
    return { source: null, diagnostics: [jsonSyntaxError(file, body, err)] };
  }
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
  const message =
    text.trim() === '' ? 'empty file: expected a JSON object'
    : err instanceof RangeError ? 'invalid JSON: nested too deeply'
    : `invalid JSON: ${describeMomoa(raw)}`;
  return { severity: 'error', message, span: { file, line, col, pointer: '' } };
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
