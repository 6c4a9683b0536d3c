import protobuf from 'protobufjs';
import { envoyRoot } from './api-root.ts';
import { checkRules } from './pgv.ts';
import { MESSAGE_CHECKS } from './semantics.ts';
import { didYouMean } from '../compiler/frontend/suggest.ts';
import type { Issue } from './issue.ts';

export type { Issue };

/**
 * Checks an Envoy configuration (the JS value of its YAML/JSON) against Envoy's own protos
 * the way Envoy's proto3 JSON loading would: unknown fields, wrong JSON types (enums by
 * name, durations as "1.5s", wrappers, Struct, Any…), two members of one oneof, and
 * `@type` URLs that name no known message are errors; the message an `Any` holds is
 * checked recursively. protobufjs' own `verify` ignores unknown fields and does not know
 * the JSON mapping, hence this walker. PGV `(validate.rules)` are checked for the subset
 * in pgv.ts, Envoy's own construction checks in semantics.ts, deprecated fields are
 * warnings (Envoy logs them).
 */

export const BOOTSTRAP_TYPE = 'envoy.config.bootstrap.v3.Bootstrap';
export const TYPE_URL_PREFIX = 'type.googleapis.com/';

/** Validates `value` as the proto3 JSON form of message `typeName` (default: the Bootstrap). */
export function validateEnvoyConfig(value: unknown, typeName = BOOTSTRAP_TYPE): Issue[] {
  const walker = new Walker(envoyRoot());
  walker.message(walker.root.lookupType(typeName), value, '');
  if (typeName === BOOTSTRAP_TYPE) walker.checkClusterReferences(value);
  return walker.issues;
}

export function errorsOf(issues: Issue[]): Issue[] {
  return issues.filter((i) => i.severity === 'error');
}

export function formatIssues(issues: Issue[]): string {
  return issues.map((i) => `${i.path || '(root)'}: ${i.severity}: ${i.message}`).join('\n');
}

const INT32 = { min: -(2 ** 31), max: 2 ** 31 - 1 };
const UINT32 = { min: 0, max: 2 ** 32 - 1 };
const INT64 = { min: -(2n ** 63n), max: 2n ** 63n - 1n };
const UINT64 = { min: 0n, max: 2n ** 64n - 1n };
const INTEGER_RANGES: Record<string, { min: number | bigint; max: number | bigint }> = {
  int32: INT32, sint32: INT32, sfixed32: INT32, uint32: UINT32, fixed32: UINT32,
  int64: INT64, sint64: INT64, sfixed64: INT64, uint64: UINT64, fixed64: UINT64,
};
const WRAPPER_SCALARS: Record<string, string> = {
  DoubleValue: 'double', FloatValue: 'float', Int64Value: 'int64', UInt64Value: 'uint64',
  Int32Value: 'int32', UInt32Value: 'uint32', BoolValue: 'bool', StringValue: 'string', BytesValue: 'bytes',
};
/** Well-known types whose JSON form is not an object of their fields; inside an Any they sit under `value`. */
const SPECIAL_JSON = new Set(['Duration', 'Timestamp', 'FieldMask', 'Struct', 'Value', 'ListValue', ...Object.keys(WRAPPER_SCALARS)]);
const DURATION = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/;
const MAX_DURATION_SECONDS = 315_576_000_000n;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const BASE64 = /^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$/;
/** Where a bootstrap names a cluster it expects to exist. */
const CLUSTER_REFERENCES: Record<string, string> = {
  '.envoy.config.route.v3.RouteAction': 'cluster',
  '.envoy.config.core.v3.HttpUri': 'cluster',
  '.envoy.config.core.v3.GrpcService.EnvoyGrpc': 'cluster_name',
};

class Walker {
  readonly issues: Issue[] = [];
  private readonly clusterRefs: { path: string; name: string }[] = [];

  constructor(readonly root: protobuf.Root) {}

  private error(path: string, message: string): void {
    this.issues.push({ path, message, severity: 'error' });
  }

  message(type: protobuf.Type, value: unknown, path: string): void {
    const wellKnown = wellKnownName(type);
    if (wellKnown && SPECIAL_JSON.has(wellKnown)) return this.wellKnown(wellKnown, value, path);
    if (wellKnown === 'Any') return this.any(value, path);
    if (!isObject(value)) return this.error(path, `expected an object (${typeLabel(type)}), got ${describe(value)}`);
    const present = new Map<protobuf.Field, string>();
    const errorsBefore = this.errorCount();
    for (const [key, fieldValue] of Object.entries(value)) {
      const fieldPath = join(path, key);
      const field = fieldByJsonKey(type, key);
      if (!field) {
        this.error(fieldPath, `unknown field '${key}' in ${typeLabel(type)}${didYouMean(key, type.fieldsArray.map((f) => f.name))}`);
        continue;
      }
      if (present.has(field)) this.error(fieldPath, `field '${field.name}' given twice (as '${present.get(field)}' and '${key}')`);
      if (fieldValue === null && !isNullable(field)) continue; // proto3 JSON: null means "not set"
      present.set(field, key);
      this.field(field, fieldValue, fieldPath);
    }
    this.oneofs(type, present, path);
    this.clusterReference(type, value, path);
    this.issues.push(...checkRules(type, value, present, path));
    // Envoy's construction checks presuppose a message that parsed.
    if (this.errorCount() === errorsBefore) this.issues.push(...(MESSAGE_CHECKS[type.fullName]?.(value, path) ?? []));
  }

  private errorCount(): number {
    return this.issues.filter((i) => i.severity === 'error').length;
  }

  private field(field: protobuf.Field, value: unknown, path: string): void {
    if (field.options?.deprecated) {
      this.issues.push({ path, message: `field '${field.name}' is deprecated in Envoy's API`, severity: 'warning' });
    }
    if (field instanceof protobuf.MapField) {
      if (!isObject(value)) return this.error(path, `expected an object (map<${field.keyType}, …>), got ${describe(value)}`);
      for (const [k, v] of Object.entries(value)) {
        if (field.keyType !== 'string') this.scalar(field.keyType, k, `${path}[${JSON.stringify(k)}] key`, true);
        this.single(field, v, `${path}[${JSON.stringify(k)}]`);
      }
      return;
    }
    if (field.repeated) {
      if (!Array.isArray(value)) return this.error(path, `expected a list for repeated field '${field.name}', got ${describe(value)}`);
      value.forEach((item, i) => this.single(field, item, `${path}[${i}]`));
      return;
    }
    this.single(field, value, path);
  }

  private single(field: protobuf.Field, value: unknown, path: string): void {
    const resolved = field.resolvedType;
    if (resolved instanceof protobuf.Type) return this.message(resolved, value, path);
    if (resolved instanceof protobuf.Enum) return this.enumValue(resolved, value, path);
    this.scalar(field.type, value, path, false);
  }

  private enumValue(type: protobuf.Enum, value: unknown, path: string): void {
    if (type.fullName === '.google.protobuf.NullValue') {
      if (value !== null && value !== 'NULL_VALUE') this.error(path, `expected null, got ${describe(value)}`);
      return;
    }
    const names = Object.keys(type.values);
    if (typeof value === 'string') {
      if (!(value in type.values)) this.error(path, `unknown value '${value}' of enum ${typeLabel(type)} (one of ${names.join(', ')})${didYouMean(value, names)}`);
    } else if (typeof value === 'number') {
      if (!Object.values(type.values).includes(value)) this.error(path, `${value} is not a value of enum ${typeLabel(type)}`);
    } else {
      this.error(path, `expected an enum name of ${typeLabel(type)} (one of ${names.join(', ')}), got ${describe(value)}`);
    }
  }

  /** proto3 JSON scalars; map keys always arrive as strings, numbers may also be quoted. */
  private scalar(kind: string, value: unknown, path: string, asKey: boolean): void {
    const range = INTEGER_RANGES[kind];
    if (range) {
      const text = typeof value === 'number' ? (Number.isInteger(value) ? String(value) : '') : typeof value === 'string' ? value : '';
      if (!/^-?\d+$/.test(text)) return this.error(path, `expected an integer (${kind}), got ${describe(value)}`);
      const n = BigInt(text);
      if (n < BigInt(range.min) || n > BigInt(range.max)) this.error(path, `${text} is out of range for ${kind}`);
      return;
    }
    switch (kind) {
      case 'double':
      case 'float':
        if (typeof value === 'number') return;
        if (typeof value === 'string' && (/^(NaN|-?Infinity)$/.test(value) || (value.trim() !== '' && Number.isFinite(Number(value))))) return;
        return this.error(path, `expected a number (${kind}), got ${describe(value)}`);
      case 'bool':
        if (typeof value === 'boolean' || (asKey && (value === 'true' || value === 'false'))) return;
        return this.error(path, `expected true or false, got ${describe(value)}`);
      case 'string':
        if (typeof value !== 'string') this.error(path, `expected a string, got ${describe(value)}`);
        return;
      case 'bytes':
        if (typeof value !== 'string' || !BASE64.test(value)) this.error(path, `expected base64-encoded bytes, got ${describe(value)}`);
        return;
      default:
        this.error(path, `unsupported scalar type ${kind}`);
    }
  }

  private wellKnown(name: string, value: unknown, path: string): void {
    const scalar = WRAPPER_SCALARS[name];
    if (scalar) return this.scalar(scalar, value, path, false);
    switch (name) {
      case 'Duration': {
        const m = typeof value === 'string' ? DURATION.exec(value) : null;
        if (!m) return this.error(path, `expected a duration string such as "1s" or "0.25s", got ${describe(value)}`);
        if (BigInt(m[2]!) > MAX_DURATION_SECONDS) this.error(path, `duration ${value} is out of range`);
        return;
      }
      case 'Timestamp':
        if (typeof value !== 'string' || !TIMESTAMP.test(value) || Number.isNaN(Date.parse(value))) {
          this.error(path, `expected an RFC 3339 timestamp, got ${describe(value)}`);
        }
        return;
      case 'FieldMask':
        if (typeof value !== 'string') this.error(path, `expected a comma-separated field mask string, got ${describe(value)}`);
        return;
      case 'Struct':
        if (!isObject(value)) this.error(path, `expected an object (google.protobuf.Struct), got ${describe(value)}`);
        return;
      case 'ListValue':
        if (!Array.isArray(value)) this.error(path, `expected a list (google.protobuf.ListValue), got ${describe(value)}`);
        return;
      case 'Value':
        return; // any JSON value
    }
  }

  /** `{"@type": URL, ...fields}`, or `{"@type": URL, "value": …}` for types with a special JSON form. */
  private any(value: unknown, path: string): void {
    if (!isObject(value)) return this.error(path, `expected an object with "@type" (google.protobuf.Any), got ${describe(value)}`);
    const url = value['@type'];
    const typePath = join(path, '@type');
    if (typeof url !== 'string') return this.error(typePath, 'missing "@type" in google.protobuf.Any');
    const type = this.resolveTypeUrl(url, typePath);
    if (!type) return;
    const { '@type': _, ...rest } = value;
    const wellKnown = wellKnownName(type);
    if (wellKnown && SPECIAL_JSON.has(wellKnown)) {
      const extra = Object.keys(rest).filter((k) => k !== 'value');
      for (const k of extra) this.error(join(path, k), `unknown field '${k}' in google.protobuf.Any holding ${typeLabel(type)} (only "value")`);
      if (!('value' in rest)) return this.error(path, `missing "value" in google.protobuf.Any holding ${typeLabel(type)}`);
      return this.wellKnown(wellKnown, rest.value, join(path, 'value'));
    }
    this.message(type, rest, path);
    if (type.fullName === '.xds.type.v3.TypedStruct' || type.fullName === '.udpa.type.v1.TypedStruct') this.typedStruct(rest, path);
  }

  /** A TypedStruct carries its message as a Struct: check it as that message's JSON. */
  private typedStruct(value: Record<string, unknown>, path: string): void {
    if (typeof value.type_url !== 'string') return;
    const type = this.resolveTypeUrl(value.type_url, join(path, 'type_url'));
    if (type && value.value !== undefined) this.message(type, value.value, join(path, 'value'));
  }

  private resolveTypeUrl(url: string, path: string): protobuf.Type | undefined {
    const slash = url.lastIndexOf('/');
    const name = url.slice(slash + 1);
    if (slash < 0 || !name) {
      this.error(path, `malformed type URL '${url}' (expected ${TYPE_URL_PREFIX}<message>)`);
      return undefined;
    }
    const found = this.root.lookup(name);
    if (found instanceof protobuf.Type) return found;
    this.error(path, `unresolvable type URL '${url}': no message ${name} in Envoy's API`);
    return undefined;
  }

  private oneofs(type: protobuf.Type, present: Map<protobuf.Field, string>, path: string): void {
    for (const oneof of type.oneofsArray) {
      const set = oneof.fieldsArray.filter((f) => present.has(f));
      if (set.length > 1) {
        this.error(path, `oneof '${oneof.name}' of ${typeLabel(type)} allows one of its fields, got ${set.map((f) => f.name).join(' and ')}`);
      }
    }
  }

  private clusterReference(type: protobuf.Type, value: Record<string, unknown>, path: string): void {
    const key = CLUSTER_REFERENCES[type.fullName];
    const name = key ? value[key] : undefined;
    if (typeof name === 'string') this.clusterRefs.push({ path: join(path, key!), name });
  }

  /** Envoy rejects a static bootstrap whose routes, gRPC services or URIs name a cluster it does not define. */
  checkClusterReferences(bootstrap: unknown): void {
    if (!isObject(bootstrap) || (isObject(bootstrap.dynamic_resources) && bootstrap.dynamic_resources.cds_config)) return;
    const resources = isObject(bootstrap.static_resources) ? bootstrap.static_resources : {};
    const clusters = Array.isArray(resources.clusters) ? resources.clusters : [];
    const names = new Set(clusters.map((c) => (isObject(c) ? c.name : undefined)));
    for (const ref of this.clusterRefs) {
      if (!names.has(ref.name)) this.error(ref.path, `cluster '${ref.name}' is not defined in static_resources.clusters`);
    }
  }
}

function wellKnownName(type: protobuf.Type): string | undefined {
  return type.fullName.startsWith('.google.protobuf.') ? type.name : undefined;
}

/** Fields by their proto name or their lowerCamelCase JSON name; Envoy's parser accepts both. */
function fieldByJsonKey(type: protobuf.Type, key: string): protobuf.Field | undefined {
  return type.fields[key] ?? type.fieldsArray.find((f) => jsonName(f.name) === key);
}

function jsonName(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function isNullable(field: protobuf.Field): boolean {
  return field.type === 'google.protobuf.Value' || field.resolvedType?.fullName === '.google.protobuf.Value';
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function typeLabel(t: protobuf.ReflectionObject): string {
  return t.fullName.replace(/^\./, '');
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}

function join(path: string, key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? (path ? `${path}.${key}` : key) : `${path}[${JSON.stringify(key)}]`;
}
