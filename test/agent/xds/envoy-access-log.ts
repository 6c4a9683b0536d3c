/**
 * Envoy's side of the audit log for tests: what the http_grpc logger of `palisade envoy
 * bootstrap --audit` would stream to the agent for one request, built from a decision the
 * real compiled filter made in the strict host (its filter state), and a gRPC client that
 * streams it as Envoy does.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { credentials, type ClientWritableStream } from '@grpc/grpc-js';
import * as assert from 'uvu/assert';
import { ALS_PROTO } from '../../../agent/xds/als.ts';
import type { Svid } from '../../../agent/sidecar/svid.ts';
import { grpcService, loadProtoRoot } from '../../../envoy/protos.ts';
import { AUDIT_LOG_NAME, DECISION_STATE, FINGERPRINT_METADATA } from '../../../envoy/access-log.ts';
import type { Filter } from '../../../host/filter.ts';
import { signFingerprint } from '../../../spiffe/fingerprint.ts';
import { JWT_AUTHN } from '../../../testing/fingerprint.ts';

const AccessLogService = grpcService(ALS_PROTO, 'envoy.service.accesslog.v3.AccessLogService');
export const BytesValue = loadProtoRoot(['google/protobuf/wrappers.proto']).lookupType('google.protobuf.BytesValue');

export interface EnvoyRequest {
  method?: string;
  path?: string;
  /** false: no fingerprint sent (jwt_authn refuses: 401, no decision); a string: this JWS. */
  fingerprint?: false | string;
  user?: { token: string; claims: Record<string, unknown> };
  /** Replaces the XFCC Envoy would set. */
  xfcc?: string;
  /** Replaces the fingerprint JWS the logger sends (metadata), after the request was decided. */
  loggedFingerprint?: string;
  /** Replaces the decision filter state's Any. */
  decisionState?: { type_url: string; value: Buffer };
}

/** XFCC as Envoy's SANITIZE_SET with `cert: true, uri: true` writes it for a verified peer. */
export function xfccOf(cert: X509Certificate, uri: string, by: string): string {
  const hash = createHash('sha256').update(cert.raw).digest('hex');
  return `By=${by};Hash=${hash};Cert="${encodeURIComponent(cert.toString())}";URI=${uri}`;
}

/** google.protobuf.Struct in @grpc/proto-loader's object form (protobufjs's built-in names). */
function struct(json: Record<string, unknown>): object {
  const value = (v: unknown): object =>
    v === null ? { nullValue: 'NULL_VALUE' }
    : typeof v === 'number' ? { numberValue: v }
    : typeof v === 'string' ? { stringValue: v }
    : typeof v === 'boolean' ? { boolValue: v }
    : Array.isArray(v) ? { listValue: { values: v.map(value) } }
    : { structValue: struct(v as Record<string, unknown>) };
  return { fields: Object.fromEntries(Object.entries(json).map(([k, v]) => [k, value(v)])) };
}

let requests = 0;

/**
 * One request from `caller` to `service` through "Envoy": jwt_authn's metadata from the
 * fingerprint it verified, the policy deciding in the strict host, and the
 * HTTPAccessLogEntry the logger would send.
 */
export async function envoyEntry(filter: Filter, caller: Svid, service: string, r: EnvoyRequest = {}): Promise<object> {
  const method = r.method ?? 'GET';
  const reqPath = r.path ?? '/cards/42';
  const jws = r.fingerprint === false ? undefined
    : r.fingerprint ?? signFingerprint(caller.privateKey, { caller: caller.spiffeId, target: service, method, path: reqPath, identityToken: r.user?.token });
  const jwt: Record<string, unknown> = {};
  if (jws) jwt.fingerprint = JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString());
  if (r.user) jwt.user = r.user.claims;
  const requestId = `req-${++requests}`;
  let status = 401;
  let details = 'jwt_authn_access_denied{Jwt_is_missing}';
  const filterState: Record<string, object> = {};
  if (jws) {
    const outcome = await filter.handleRequest({ method, path: reqPath, authority: 'card', source: { principal: caller.spiffeId }, metadata: { [JWT_AUTHN]: jwt }, headers: { 'x-request-id': requestId } });
    const state = outcome.filterState.get(DECISION_STATE);
    assert.ok(state, 'the filter set its decision as filter state');
    // Envoy: CelState::serializeAsProto, an Any of BytesValue.
    filterState[DECISION_STATE] = { type_url: 'type.googleapis.com/google.protobuf.BytesValue', value: Buffer.from(BytesValue.encode({ value: state }).finish()) };
    status = outcome.status;
    details = outcome.details;
  }
  if (r.decisionState) filterState[DECISION_STATE] = r.decisionState;
  const now = Date.now();
  const filterMetadata: Record<string, object> = {};
  if (Object.keys(jwt).length) filterMetadata[JWT_AUTHN] = struct(jwt);
  if (jws) filterMetadata[FINGERPRINT_METADATA.namespace] = struct({ [FINGERPRINT_METADATA.key]: r.loggedFingerprint ?? jws });
  const headers: Record<string, string> = {
    'x-forwarded-client-cert': r.xfcc ?? xfccOf(new X509Certificate(caller.chainPem), caller.spiffeId, service),
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  };
  if (r.user) headers.authorization = `Bearer ${r.user.token}`;
  return {
    common_properties: {
      start_time: { seconds: String(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 },
      tls_properties: { tls_version: 'TLSv1_3', peer_certificate_properties: { subject_alt_name: [{ uri: caller.spiffeId }] } },
      metadata: { filter_metadata: filterMetadata },
      filter_state_objects: filterState,
    },
    protocol_version: 'HTTP11',
    request: { request_method: method, path: reqPath, request_id: requestId, request_headers: headers },
    response: { response_code: { value: status }, response_code_details: details },
  };
}

/** Streams `batches` to the agent's socket (the first message names the log, as Envoy does); resolves with the call's error, if any. */
export function streamAccessLogs(socket: string, batches: object[][], logName = AUDIT_LOG_NAME): Promise<{ code: number; details: string } | null> {
  const client = new AccessLogService(`unix:${socket}`, credentials.createInsecure());
  return new Promise((resolve) => {
    const call = client.StreamAccessLogs((err: { code: number; details: string } | null) => {
      client.close();
      resolve(err ? { code: err.code, details: err.details } : null);
    }) as ClientWritableStream<object>;
    batches.forEach((entries, i) =>
      call.write({ ...(i === 0 ? { identifier: { node: { id: 'card', cluster: 'card' }, log_name: logName } } : {}), http_logs: { log_entry: entries } }),
    );
    call.end();
  });
}
