import type protobuf from 'protobufjs';
import type { Issue } from './validate.ts';

/**
 * The subset of protoc-gen-validate `(validate.rules)` Envoy enforces on load that matters
 * for the configs we write: required messages and oneofs, string and list lengths,
 * numeric and duration bounds. Rules sit in field options flattened by protobufjs, e.g.
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
      const n = Array.isArray(v) ? v.length : 0;
      if (!(rules['repeated.ignore_empty'] && n === 0)) bounds(n, rules, 'repeated', 'min_items', 'max_items', 'items', at, error);
      continue;
    }
    if (field.type === 'string') {
      const s = typeof v === 'string' ? v : '';
      if (!(rules['string.ignore_empty'] && s === '')) {
        bounds([...s].length, rules, 'string', 'min_len', 'max_len', 'characters', at, error);
        bounds(Buffer.byteLength(s), rules, 'string', 'min_bytes', 'max_bytes', 'bytes', at, error);
      }
      continue;
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
