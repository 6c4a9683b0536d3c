/**
 * Structural validation against the published JSON Schema (schema/policy.schema.json), with
 * each ajv error turned into a diagnostic at the offending value (or key) in the file.
 */
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import schema from '../../schema/policy.schema.json' with { type: 'json' };
import type { Diagnostic } from './ast.ts';
import { escapePointer, memberAt, spanAt, splitPointer, type Source } from './source.ts';
import { didYouMean } from './suggest.ts';

export { schema };

const validate = new Ajv2020({ allErrors: true, strict: true, verbose: true }).compile(schema);

export function validateSchema(src: Source): Diagnostic[] {
  if (validate(src.value)) return [];
  // A failed `if`/`else` (a document without `scope` needs `service`) comes with the error of
  // the branch, which says what is missing; the `if` error itself says nothing more.
  return (validate.errors ?? []).filter((e) => e.keyword !== 'if').map((e) => toDiagnostic(src, e));
}

function toDiagnostic(src: Source, e: ErrorObject): Diagnostic {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      const span = spanAt(src, `${e.instancePath}/${escapePointer(key)}`);
      const member = memberAt(src.root, e.instancePath, key);
      if (member) Object.assign(span, { line: member.name.loc.start.line, col: member.name.loc.start.column });
      return error(span, `unknown property '${key}'${didYouMean(key, knownProperties(e.parentSchema))}`);
    }
    case 'required':
      return error(spanAt(src, e.instancePath), `missing required property '${String(p.missingProperty)}'`);
    case 'enum':
      return error(spanAt(src, e.instancePath), `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`);
    case 'const':
      return error(spanAt(src, e.instancePath), `must be ${JSON.stringify(p.allowedValue)}`);
    case 'type':
      return error(spanAt(src, e.instancePath), `must be ${article(String(p.type))}, not ${jsonType(valueAt(src, e.instancePath))}`);
    case 'pattern':
      return error(spanAt(src, e.instancePath), patternMessage(e.instancePath, String(p.pattern)));
    case 'minItems':
      return error(spanAt(src, e.instancePath), `must not be empty (omit it instead)`);
    default:
      return error(spanAt(src, e.instancePath), e.message ?? 'invalid value');
  }
}

function error(span: Diagnostic['span'], message: string): Diagnostic {
  return { severity: 'error', message, span };
}

/** Pattern failures get a sentence about what the field is, not a regular expression. */
function patternMessage(pointer: string, pattern: string): string {
  if (pointer === '/name') return 'policy name must use only lowercase letters, digits and \'-\'';
  if (/\/id$/.test(pointer)) return 'rule id must start with a letter or digit and use only letters, digits, \'.\', \'_\', \':\' and \'-\'';
  if (pattern === '^spiffe://') return "must be a SPIFFE ID starting with 'spiffe://'";
  return `must match ${pattern}`;
}

function knownProperties(parentSchema: unknown): string[] {
  const props = (parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties;
  return props ? Object.keys(props) : [];
}

function valueAt(src: Source, pointer: string): unknown {
  let v: unknown = src.value;
  for (const t of splitPointer(pointer)) v = (v as Record<string, unknown>)?.[t];
  return v;
}

function jsonType(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : article(typeof v);
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}
