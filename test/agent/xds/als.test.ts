/**
 * Envoy-mode audit: the agent's access-log service on its Unix socket, fed by a real gRPC
 * client streaming StreamAccessLogsMessage as Envoy's http_grpc logger sends it under
 * `palisade envoy bootstrap --audit`. Each entry is built from what Envoy would hold: the
 * decision record the real compiled card policy set as filter state in our strict host
 * (proxy_set_property, read back from the outcome), jwt_authn's verified payloads and the
 * fingerprint in dynamic metadata, the caller's certificate in XFCC. The log then verifies
 * like a sidecar's (`palisade audit verify` included), tampering is caught, and entries whose
 * evidence does not hold are refused, counted and never written.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { X509Certificate, createHash, generateKeyPairSync } from 'node:crypto';
import { cpSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { credentials, type ClientWritableStream } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { AuditLog } from '../../../audit/log.ts';
import { verifyLog, VerifyError } from '../../../audit/verify.ts';
import { createAccessLogService, ALS_PROTO } from '../../../agent/xds/als.ts';
import { createXdsServer } from '../../../agent/xds/server.ts';
import { grpcService, loadProtoRoot } from '../../../envoy/protos.ts';
import { AUDIT_LOG_NAME, DECISION_STATE, FINGERPRINT_METADATA } from '../../../envoy/access-log.ts';
import { loadFilter, type Filter } from '../../../host/filter.ts';
import { signFingerprint } from '../../../spiffe/fingerprint.ts';
import { JWT_AUTHN } from '../../../testing/fingerprint.ts';
import { CARD, FRONTEND, captureLog, identities } from '../sidecar/harness.ts';
import { compiled } from '../sidecar/policies.ts';
import { palisade } from '../../support/cli.ts';
import { removeDir, tempDir } from '../../support/identity.ts';

const ids = await identities();
const root = tempDir('als');
const dir = path.join(root, 'audit');
const socket = path.join(root, 'agent.sock');
const bundleFile = path.join(root, 'bundle.pem');
writeFileSync(bundleFile, ids.ca.certPem);
const wasm = await compiled('card');
const POLICY_SHA256 = createHash('sha256').update(wasm).digest('hex');
const filter: Filter = await loadFilter(wasm);
const log = AuditLog.open({ dir, signer: ids.card, checkpointEvery: 3 });
const registry = new Registry();
const captured = captureLog();
const server = createXdsServer(socket, [createAccessLogService({ log, identity: ids.card, policySha256: () => POLICY_SHA256, logger: captured.logger, registry })]);
await server.start();
const AccessLogService = grpcService(ALS_PROTO, 'envoy.service.accesslog.v3.AccessLogService');
const BytesValue = loadProtoRoot(['google/protobuf/wrappers.proto']).lookupType('google.protobuf.BytesValue');

test.after(async () => {
  await filter.close();
  await server.close();
  await log.close();
  removeDir(root);
});

const frontendCert = new X509Certificate(ids.frontend.svid().chainPem);

interface Req {
  method?: string;
  path?: string;
  /** false: no fingerprint sent (jwt_authn refuses: 401, no decision). */
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
function xfccOf(cert: X509Certificate, uri: string): string {
  const hash = createHash('sha256').update(cert.raw).digest('hex');
  return `By=${CARD};Hash=${hash};Cert="${encodeURIComponent(cert.toString())}";URI=${uri}`;
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
 * One request through "Envoy": jwt_authn's metadata from the fingerprint it verified, the
 * policy decided in the strict host, and the HTTPAccessLogEntry the logger would send.
 */
async function envoyEntry(r: Req = {}): Promise<object> {
  const method = r.method ?? 'GET';
  const reqPath = r.path ?? '/cards/42';
  const jws = r.fingerprint === false ? undefined
    : r.fingerprint ?? signFingerprint(ids.frontend.svid().privateKey, { caller: FRONTEND, target: CARD, method, path: reqPath, identityToken: r.user?.token });
  const jwt: Record<string, unknown> = {};
  if (jws) jwt.fingerprint = JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString());
  if (r.user) jwt.user = r.user.claims;
  const requestId = `req-${++requests}`;
  let status = 401;
  let details = 'jwt_authn_access_denied{Jwt_is_missing}';
  const filterState: Record<string, object> = {};
  if (jws) {
    const outcome = await filter.handleRequest({ method, path: reqPath, authority: 'card', source: { principal: FRONTEND }, metadata: { [JWT_AUTHN]: jwt }, headers: { 'x-request-id': requestId } });
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
    'x-forwarded-client-cert': r.xfcc ?? xfccOf(frontendCert, FRONTEND),
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  };
  if (r.user) headers.authorization = `Bearer ${r.user.token}`;
  return {
    common_properties: {
      start_time: { seconds: String(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 },
      tls_properties: { tls_version: 'TLSv1_3', peer_certificate_properties: { subject_alt_name: [{ uri: FRONTEND }] } },
      metadata: { filter_metadata: filterMetadata },
      filter_state_objects: filterState,
    },
    protocol_version: 'HTTP11',
    request: { request_method: method, path: reqPath, request_id: requestId, request_headers: headers },
    response: { response_code: { value: status }, response_code_details: details },
  };
}

/** Streams `batches` (the first message names the log, as Envoy does); resolves with the call's status. */
function stream(batches: object[][], logName = AUDIT_LOG_NAME): Promise<{ code: number; details: string } | null> {
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

const counted = async (result: string) => (await registry.getSingleMetric('palisade_audit_envoy_entries_total')!.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
async function settled(total: number): Promise<void> {
  for (let i = 0; i < 200 && (await counted('written')) + (await counted('rejected')) < total; i++) await new Promise((r) => setTimeout(r, 25));
}
const segment = (d: string) => path.join(d, 'segments', readdirSync(path.join(d, 'segments'))[0]!);
const entries = () => readFileSync(segment(dir), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

test("Envoy's decisions become entries of the sidecar's shape, and the log verifies", async () => {
  const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.sig';
  const batches = [
    [await envoyEntry({ path: '/cards/1?secret=1' }), await envoyEntry({ method: 'DELETE', path: '/cards/1' })],
    [await envoyEntry({ fingerprint: false }), await envoyEntry({ path: '/cards', user: { token, claims: { sub: 'alice', scope: 'list_cards' } } })],
  ];
  assert.is(await stream(batches), null);
  await settled(4);
  assert.is(await counted('written'), 4);
  assert.is(await counted('rejected'), 0);
  const [allowed, denied, refused, withUser] = entries();
  assert.equal(
    { decision: allowed.decision, status: allowed.status, rule: allowed.rule, mode: allowed.mode, reason: allowed.reason, path: allowed.path, service: allowed.service, policy: allowed.policy },
    { decision: 'allow', status: 200, rule: 'read-card', mode: 'enforce', reason: 'allow_rule', path: '/cards/1?secret=', service: CARD, policy: { sha256: POLICY_SHA256 } },
  );
  assert.equal(allowed.caller, { id: FRONTEND, serial: frontendCert.serialNumber, cert: createHash('sha256').update(frontendCert.raw).digest('hex') });
  assert.is(allowed.trace_id, '0af7651916cd43dd8448eb211c80319c');
  assert.is(allowed.request_id, 'req-1');
  assert.is(allowed.fingerprint.split('.').length, 3);
  assert.equal([denied.decision, denied.status, denied.reason], ['deny', 403, 'no_allow_rule']);
  // jwt_authn refused it before the policy: recorded as the sidecar records such a refusal.
  assert.equal([refused.decision, refused.status, refused.mode, refused.rule, refused.fingerprint, refused.policy], ['unauthenticated', 401, null, null, null, null]);
  assert.is(refused.reason, 'jwt_authn_access_denied{Jwt_is_missing}');
  assert.equal(withUser.user, { claims: { sub: 'alice', scope: 'list_cards' }, token_sha256: createHash('sha256').update(token).digest('base64url') });
  assert.equal([withUser.decision, withUser.rule], ['allow', 'list-cards']);
  assert.not.match(readFileSync(segment(dir), 'utf8'), new RegExp(`${token}|secret=1`));
  assert.ok(readdirSync(path.join(dir, 'certs')).includes(`${allowed.caller.cert}.pem`));

  await log.checkpoint();
  assert.is((await verifyLog(dir, ids.ca.certPem)).entries, 4);
  const cli = await palisade(['audit', 'verify', dir, '--bundle', bundleFile]);
  assert.is(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /verified 4 entries/);
});

test('tampering with an Envoy-written entry is caught as for the sidecar', async () => {
  const copy = path.join(root, 'tampered');
  cpSync(dir, copy, { recursive: true });
  writeFileSync(segment(copy), readFileSync(segment(copy), 'utf8').replace('"decision":"deny"', '"decision":"allow"'));
  try {
    await verifyLog(copy, ids.ca.certPem);
    assert.unreachable('verify accepted an altered entry');
  } catch (err) {
    assert.instance(err, VerifyError);
    assert.match((err as Error).message, /^entry 1: altered/);
  }
});

test('entries whose evidence does not hold are refused, counted and logged, never written; the stream goes on', async () => {
  const before = log.tree.size;
  const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const forged = signFingerprint(stranger, { caller: FRONTEND, target: CARD, method: 'GET', path: '/cards/7' });
  const otherRequest = signFingerprint(ids.frontend.svid().privateKey, { caller: FRONTEND, target: CARD, method: 'GET', path: '/cards/8' });
  const cardCert = new X509Certificate(ids.card.svid().chainPem);
  const bad = [
    // Signed by a key that is not the caller's: jwt_authn would not have accepted it, and verify would not.
    await envoyEntry({ path: '/cards/7', fingerprint: forged }),
    // Another request's fingerprint under this request's decision.
    await envoyEntry({ path: '/cards/9', loggedFingerprint: otherRequest }),
    // A certificate that is not the one its hash names, and one that does not name the URI.
    await envoyEntry({ xfcc: xfccOf(frontendCert, FRONTEND).replace(/Hash=[0-9a-f]{4}/, 'Hash=0000') }),
    await envoyEntry({ xfcc: xfccOf(cardCert, FRONTEND) }),
    // A decision record that is not one.
    await envoyEntry({ decisionState: { type_url: 'type.googleapis.com/google.protobuf.BytesValue', value: Buffer.from(BytesValue.encode({ value: Buffer.from('{"decision":"allow"}') }).finish()) } }),
    await envoyEntry({ decisionState: { type_url: 'type.googleapis.com/google.protobuf.StringValue', value: Buffer.from([10, 1, 120]) } }),
  ];
  const good = await envoyEntry({ path: '/cards/10' });
  assert.is(await stream([bad, [good]]), null);
  await settled(before + 6 + 1);
  assert.is(await counted('rejected'), 6);
  assert.is(log.tree.size, before + 1);
  const rejected = captured.lines.filter((l) => l.msg === 'Envoy access-log entry rejected: not written to the audit log').map((l) => String(l.reason));
  assert.is(rejected.length, 6);
  // Checks run side by side (signatures in the threadpool): each reason once, in any order.
  for (const reason of [/fingerprint signature does not verify/, /fingerprint belongs to another request/, /does not have the Hash given/, /does not name the URI given/, /not a decision record/, /not a BytesValue/]) {
    assert.is(rejected.filter((r) => reason.test(r)).length, 1, `${reason}: ${rejected.join(' | ')}`);
  }
  assert.equal(entries().at(-1).path, '/cards/10');
  await log.checkpoint();
  assert.is((await verifyLog(dir, ids.ca.certPem)).entries, before + 1);
});

test('only the audit log name may stream: another is refused and writes nothing', async () => {
  const before = log.tree.size;
  const refused = await stream([[await envoyEntry()]], 'some.other.log');
  assert.is(refused?.code, 3); // INVALID_ARGUMENT
  assert.match(refused!.details, /palisade\.audit/);
  assert.is(log.tree.size, before);
});

test.run();
