/**
 * One of Envoy's HTTP access-log entries (envoy.data.accesslog.v3.HTTPAccessLogEntry, as
 * `palisade envoy bootstrap --audit` configures the http_grpc logger) turned into an audit
 * entry of the same shape the sidecar writes (audit/entry.ts). Where each field comes from:
 *
 * - the decision: filter state `wasm.palisade.decision`, which the policy filter sets with
 *   proxy_set_property (its decision line's JSON; Envoy sends it as an Any of BytesValue);
 * - the caller: the `x-forwarded-client-cert` header Envoy set from the verified peer
 *   (SANITIZE_SET with `Hash`, `Cert` and `URI`): the certificate itself, its hash and ID;
 * - the identity context: jwt_authn's verified payload (dynamic metadata `user`) and the
 *   SHA-256 of the bearer token in `authorization` (hashed here, never kept);
 * - the fingerprint: the JWS jwt_authn verified, copied into metadata `palisade.fingerprint`
 *   by header_to_metadata before jwt_authn removes the header;
 * - time, method, path, request id: the entry's own fields; the trace id from `traceparent`.
 *
 * A request the policy never decided (jwt_authn refused it) or refused for its fingerprint is
 * recorded as the sidecar records a refusal before the policy: no mode, no rule, no
 * fingerprint. Anything malformed throws AccessLogEntryError; nothing here verifies the
 * fingerprint (the caller of entryOf does, as `palisade audit verify` will).
 */
import { X509Certificate } from 'node:crypto';
import { redactPath, type Decided } from '../../audit/entry.ts';
import { tokenHash } from '../../spiffe/fingerprint.ts';
import { loadProtoRoot } from '../../envoy/protos.ts';
import { DECISION_STATE, FINGERPRINT_METADATA } from '../../envoy/access-log.ts';
import { pathForLog } from '../sidecar/decision-log.ts';

export class AccessLogEntryError extends Error {}

const JWT_AUTHN = 'envoy.filters.http.jwt_authn';

const BYTES_VALUE = 'type.googleapis.com/google.protobuf.BytesValue';
const DECISIONS = new Set(['allow', 'deny', 'unauthenticated']);
const MODES = new Set(['enforce', 'dry-run']);

/** The entry and the caller certificate it names (to be stored in certs/). */
export interface EnvoyDecision {
  decided: Decided;
  cert: X509Certificate | null;
}

type Obj = Record<string, any>;

export function entryOf(entry: Obj, service: string, policySha256: string | undefined): EnvoyDecision {
  const common: Obj = entry?.common_properties ?? {};
  const request: Obj = entry?.request ?? {};
  const headers: Obj = request.request_headers ?? {};
  const filterMetadata: Obj = common.metadata?.filter_metadata ?? {};
  const method = string(request.request_method, 'request_method');
  const path = string(request.path, 'path');
  const caller = callerOf(headers['x-forwarded-client-cert']);
  const jwt = filterMetadata[JWT_AUTHN] ? structToJson(filterMetadata[JWT_AUTHN]) : {};
  const bearer = typeof headers.authorization === 'string' && headers.authorization.startsWith('Bearer ') ? headers.authorization.slice(7) : undefined;
  const claims = jwt.user as Record<string, unknown> | undefined;
  if (claims !== undefined && (bearer === undefined || typeof claims !== 'object' || claims === null)) throw new AccessLogEntryError('identity-context claims without the bearer token they came from');
  const decision = decisionOf(common.filter_state_objects?.[DECISION_STATE]);
  const status = Number(entry?.response?.response_code?.value ?? 0);
  const fingerprintMetadata = filterMetadata[FINGERPRINT_METADATA.namespace] ? structToJson(filterMetadata[FINGERPRINT_METADATA.namespace])[FINGERPRINT_METADATA.key] : undefined;
  // The policy's decision stands; refusals before it (jwt_authn, or the fingerprint checks)
  // are recorded as the sidecar records them: no mode, no rule, no fingerprint.
  const decided = decision && !decision.reason.startsWith('fingerprint_');
  return {
    cert: caller?.cert ?? null,
    decided: {
      time: timeOf(common.start_time),
      trace_id: traceIdOf(headers.traceparent),
      request_id: typeof request.request_id === 'string' ? request.request_id : '',
      service,
      caller: caller ? { id: caller.id, serial: caller.cert.serialNumber, cert: caller.hash } : null,
      user: claims !== undefined ? { claims, token_sha256: tokenHash(bearer!) } : null,
      method,
      path: redactPath(pathForLog(path)), // as the sidecar's entries
      decision: decision ? decision.decision : status === 401 ? 'unauthenticated' : 'error',
      status: decision ? decision.status : status,
      rule: decided ? decision.rule : null,
      mode: decided ? decision.mode : null,
      reason: decision ? decision.reason : string(entry?.response?.response_code_details || 'no_decision', 'response_code_details'),
      policy: decision && policySha256 ? { sha256: policySha256 } : null,
      fingerprint: decided && typeof fingerprintMetadata === 'string' ? fingerprintMetadata : null,
    },
  };
}

interface Decision {
  decision: string;
  status: number;
  rule: string | null;
  mode: string;
  reason: string;
}

/** The policy filter's record, from its filter state (an Any of BytesValue); null when it did not decide. */
function decisionOf(any: Obj | undefined): Decision | null {
  if (any === undefined) return null;
  if (any?.type_url !== BYTES_VALUE || !Buffer.isBuffer(any.value)) throw new AccessLogEntryError(`${DECISION_STATE} is not a BytesValue`);
  const BytesValue = loadProtoRoot(['google/protobuf/wrappers.proto']).lookupType('google.protobuf.BytesValue');
  let d: Decision;
  try {
    d = JSON.parse(Buffer.from((BytesValue.decode(any.value) as unknown as { value: Uint8Array }).value ?? []).toString('utf8'));
  } catch {
    throw new AccessLogEntryError(`${DECISION_STATE} is not a decision record`);
  }
  const ok =
    DECISIONS.has(d?.decision) && Number.isInteger(d.status) && (d.rule === null || typeof d.rule === 'string') &&
    MODES.has(d.mode) && typeof d.reason === 'string';
  if (!ok) throw new AccessLogEntryError(`${DECISION_STATE} is not a decision record`);
  return d;
}

/**
 * The verified caller from Envoy's `x-forwarded-client-cert` (one element: SANITIZE_SET):
 * its `Cert` (URL-encoded PEM) must hash to its `Hash` and name its `URI`. Null: no header.
 */
function callerOf(xfcc: unknown): { id: string; hash: string; cert: X509Certificate } | null {
  if (xfcc === undefined) return null;
  if (typeof xfcc !== 'string') throw new AccessLogEntryError('x-forwarded-client-cert is not a string');
  const fields = xfccFields(xfcc);
  const { Hash: hash, Cert: pem, URI: uri } = fields;
  if (!hash || !pem || !uri) throw new AccessLogEntryError('x-forwarded-client-cert lacks Hash, Cert or URI');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(decodeURIComponent(pem));
  } catch {
    throw new AccessLogEntryError('x-forwarded-client-cert: Cert is not a certificate');
  }
  if (cert.fingerprint256.replaceAll(':', '').toLowerCase() !== hash.toLowerCase()) throw new AccessLogEntryError('x-forwarded-client-cert: Cert does not have the Hash given');
  if (!cert.subjectAltName?.split(', ').includes(`URI:${uri}`)) throw new AccessLogEntryError('x-forwarded-client-cert: Cert does not name the URI given');
  return { id: uri, hash: hash.toLowerCase(), cert };
}

/** `k=v;k="quoted;value"` (Envoy quotes values holding `,;=`); a second element (`,`) is refused. */
function xfccFields(value: string): Record<string, string> {
  const fields: Record<string, string> = {};
  let i = 0;
  while (i < value.length) {
    const eq = value.indexOf('=', i);
    if (eq < 0) throw new AccessLogEntryError('x-forwarded-client-cert is malformed');
    const key = value.slice(i, eq);
    let v: string;
    let next: number;
    if (value[eq + 1] === '"') {
      const close = value.indexOf('"', eq + 2);
      if (close < 0) throw new AccessLogEntryError('x-forwarded-client-cert is malformed');
      v = value.slice(eq + 2, close);
      next = close + 1;
    } else {
      next = value.slice(eq + 1).search(/[;,]/);
      next = next < 0 ? value.length : eq + 1 + next;
      v = value.slice(eq + 1, next);
    }
    if (value[next] === ',') throw new AccessLogEntryError('x-forwarded-client-cert has more than one element');
    if (Object.hasOwn(fields, key)) throw new AccessLogEntryError(`x-forwarded-client-cert repeats ${key}`);
    fields[key] = v;
    i = next + 1;
  }
  return fields;
}

function timeOf(ts: Obj | undefined): string {
  const ms = Number(ts?.seconds) * 1000 + Math.floor(Number(ts?.nanos ?? 0) / 1e6);
  if (!Number.isFinite(ms) || ms <= 0) throw new AccessLogEntryError('no start_time');
  return new Date(ms).toISOString();
}

/** The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), else ''. */
function traceIdOf(traceparent: unknown): string {
  return typeof traceparent === 'string' ? (/^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent)?.[1] ?? '') : '';
}

function string(v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '') throw new AccessLogEntryError(`no ${what}`);
  return v;
}

/**
 * google.protobuf.Struct as @grpc/proto-loader decodes it → JSON. Its well-known types come
 * from protobufjs's built-in definitions, whose field names are lowerCamelCase whatever
 * `keepCase` says (`numberValue`, not `number_value`), with the oneof named in `kind`.
 */
function structToJson(struct: Obj): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(struct?.fields ?? {})) out[k] = valueToJson(v as Obj);
  return out;
}

function valueToJson(v: Obj): unknown {
  switch (v?.kind) {
    case 'nullValue': return null;
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'structValue': return structToJson(v.structValue);
    case 'listValue': return (v.listValue?.values ?? []).map((item: Obj) => valueToJson(item));
  }
  throw new AccessLogEntryError('metadata holds a value of no known kind');
}
