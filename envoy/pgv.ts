import protobuf from 'protobufjs';
import type { Issue } from './issue.ts';

/**
 * The protoc-gen-validate `(validate.rules)` Envoy enforces on load, except `in` lists:
 * required messages and oneofs, string lengths, patterns and header-name/value syntax (also
 * for list items), list and map sizes, unique lists, numeric and duration bounds, bool
 * constants, excluded enum values. Rules sit in field options flattened by protobufjs, e.g.
 * `(validate.rules).string.min_len`. Like PGV, scalars that are absent count as their
 * default ('' or 0), messages and oneof members only when present.
 */
const RULE = '(validate.rules).';
const NUMERIC_KINDS = new Set(['uint32', 'int32', 'uint64', 'int64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'double', 'float']);

export function checkRules(type: protobuf.Type, value: Record<string, unknown>, present: Map<protobuf.Field, string>, path: string): Issue[] {
  const issues: Issue[] = [];
  const error = (at: string, message: string) => issues.push({ path: at, message, severity: 'error' });
  for (const oneof of type.oneofsArray) {
    if (oneof.options?.['(validate.required)'] && !oneof.fieldsArray.some((f) => present.has(f))) {
      error(path, `one of ${oneof.fieldsArray.map((f) => f.name).join(', ')} is required in ${type.fullName.slice(1)}`);
    }
  }
  for (const field of type.fieldsArray) {
    const rules = rulesOf(field);
    if (!rules) continue;
    const key = present.get(field);
    const at = path ? `${path}.${field.name}` : field.name;
    if (key === undefined && field.partOf) continue; // unset oneof member: nothing to check
    const v = key === undefined ? undefined : value[key];
    const required = rules['message.required'] || rules['duration.required'] || rules['any.required'];
    if (required && key === undefined) error(at, `required field '${field.name}' is missing`);
    if (rules['map.min_pairs'] !== undefined) {
      bounds(typeof v === 'object' && v ? Object.keys(v).length : 0, rules, 'map', 'min_pairs', 'max_pairs', 'entries', at, error);
    }
    if (field.repeated) {
      const items = Array.isArray(v) ? v : [];
      if (!(rules['repeated.ignore_empty'] && items.length === 0)) bounds(items.length, rules, 'repeated', 'min_items', 'max_items', 'items', at, error);
      if (rules['repeated.unique'] && new Set(items.map((i) => JSON.stringify(i))).size !== items.length) error(at, 'items must be unique');
      items.forEach((item, i) => typeof item === 'string' && checkString(item, rules, 'repeated.items.string', `${at}[${i}]`, error));
      continue;
    }
    if (field.type === 'string') {
      checkString(typeof v === 'string' ? v : '', rules, 'string', at, error);
      continue;
    }
    if ('bool.const' in rules && (v ?? false) !== rules['bool.const']) error(at, `must be ${rules['bool.const']}`);
    // protobufjs keeps only the last value of a repeated option: `not_in` is then still a
    // sound (weaker) check, `in` would not be, so it is left out.
    const notIn = rules['enum.not_in'];
    if (notIn !== undefined && key !== undefined && field.resolvedType instanceof protobuf.Enum) {
      const values = field.resolvedType.values;
      if ((typeof v === 'string' ? values[v] : v) === notIn) error(at, `must not be ${typeof v === 'string' ? v : notIn}`);
    }
    const kind = numericKind(rules);
    // A scalar counts as 0 when absent; a wrapper (UInt32Value…) is checked only when set.
    const scalar = NUMERIC_KINDS.has(field.type);
    const n = key === undefined ? 0 : Number(v);
    if (kind && (scalar || key !== undefined) && Number.isFinite(n)) { // a non-number is already a type error
      numeric(n, rules[`${kind}.gt`], rules[`${kind}.gte`], rules[`${kind}.lt`], rules[`${kind}.lte`], at, error);
    }
    if (field.type.endsWith('Duration') && typeof v === 'string') {
      numeric(seconds(v), durationRule(rules, 'gt'), durationRule(rules, 'gte'), durationRule(rules, 'lt'), durationRule(rules, 'lte'), at, error);
    }
  }
  return issues;
}

/** Header names and values Envoy (via PGV) accepts; `strict` defaults to true in PGV. */
const WELL_KNOWN: Record<string, { strict: RegExp; lax: RegExp }> = {
  HTTP_HEADER_NAME: { strict: /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/, lax: /^[^\0\n\r]*$/ },
  HTTP_HEADER_VALUE: { strict: /^[^\0-\x08\n-\x1f\x7f]*$/, lax: /^[^\0\n\r]*$/ },
};

function checkString(s: string, rules: Record<string, unknown>, kind: string, at: string, error: (at: string, m: string) => void): void {
  if (rules[`${kind}.ignore_empty`] && s === '') return;
  bounds([...s].length, rules, kind, 'min_len', 'max_len', 'characters', at, error);
  bounds(Buffer.byteLength(s), rules, kind, 'min_bytes', 'max_bytes', 'bytes', at, error);
  const pattern = rules[`${kind}.pattern`];
  if (typeof pattern === 'string' && !safeRegExp(pattern)?.test(s)) error(at, `must match ${pattern}`);
  const known = WELL_KNOWN[String(rules[`${kind}.well_known_regex`])];
  if (known && !(rules[`${kind}.strict`] === false ? known.lax : known.strict).test(s)) {
    error(at, `${JSON.stringify(s)} is not a valid ${String(rules[`${kind}.well_known_regex`]).toLowerCase().replace(/_/g, ' ')}`);
  }
}

/** PGV patterns are RE2; the few JavaScript cannot compile are not checked rather than misjudged. */
function safeRegExp(pattern: string): RegExp | undefined {
  try {
    return new RegExp(pattern, 'u');
  } catch {
    return undefined;
  }
}

function numericKind(rules: Record<string, unknown>): string | undefined {
  return Object.keys(rules).map((k) => k.split('.')[0]!).find((k) => NUMERIC_KINDS.has(k));
}

function rulesOf(field: protobuf.Field): Record<string, unknown> | undefined {
  const entries = Object.entries(field.options ?? {}).filter(([k]) => k.startsWith(RULE));
  return entries.length ? Object.fromEntries(entries.map(([k, v]) => [k.slice(RULE.length), v])) : undefined;
}

function bounds(n: number, rules: Record<string, unknown>, kind: string, minKey: string, maxKey: string, unit: string, at: string, error: (at: string, m: string) => void): void {
  const min = rules[`${kind}.${minKey}`];
  const max = rules[`${kind}.${maxKey}`];
  if (typeof min === 'number' && n < min) error(at, `needs at least ${min} ${unit}, has ${n}`);
  if (typeof max === 'number' && n > max) error(at, `allows at most ${max} ${unit}, has ${n}`);
}

function numeric(n: number, gt: unknown, gte: unknown, lt: unknown, lte: unknown, at: string, error: (at: string, m: string) => void): void {
  if (typeof gt === 'number' && !(n > gt)) error(at, `must be greater than ${gt}, is ${n}`);
  if (typeof gte === 'number' && !(n >= gte)) error(at, `must be at least ${gte}, is ${n}`);
  if (typeof lt === 'number' && !(n < lt)) error(at, `must be less than ${lt}, is ${n}`);
  if (typeof lte === 'number' && !(n <= lte)) error(at, `must be at most ${lte}, is ${n}`);
}

/** `(validate.rules).duration.gt.seconds` / `.nanos` as seconds; undefined when the bound is absent. */
function durationRule(rules: Record<string, unknown>, bound: string): number | undefined {
  const s = rules[`duration.${bound}.seconds`];
  const ns = rules[`duration.${bound}.nanos`];
  if (s === undefined && ns === undefined) return undefined;
  return Number(s ?? 0) + Number(ns ?? 0) / 1e9;
}

function seconds(duration: string): number {
  return Number(duration.slice(0, -1));
}
