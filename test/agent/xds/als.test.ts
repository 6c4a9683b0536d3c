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
import { Registry } from 'prom-client';
import { AuditLog } from '../../../audit/log.ts';
import { verifyLog, VerifyError } from '../../../audit/verify.ts';
import { createAccessLogService } from '../../../agent/xds/als.ts';
import { createXdsServer } from '../../../agent/xds/server.ts';
import { loadFilter, type Filter } from '../../../host/filter.ts';
import { signFingerprint } from '../../../spiffe/fingerprint.ts';
import { CARD, FRONTEND, captureLog, identities } from '../sidecar/harness.ts';
import { compiled } from '../sidecar/policies.ts';
import { BytesValue, envoyEntry, streamAccessLogs, xfccOf, type EnvoyRequest } from './envoy-access-log.ts';
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

test.after(async () => {
  await filter.close();
  await server.close();
  await log.close();
  removeDir(root);
});

const frontendCert = new X509Certificate(ids.frontend.svid().chainPem);
const envoy = (r: EnvoyRequest = {}) => envoyEntry(filter, ids.frontend.svid(), CARD, r);
const stream = (batches: object[][], logName?: string) => streamAccessLogs(socket, batches, logName);
const xfcc = (cert: X509Certificate, uri: string) => xfccOf(cert, uri, CARD);

const counted = async (result: string) => (await registry.getSingleMetric('palisade_audit_envoy_entries_total')!.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
async function settled(total: number): Promise<void> {
  for (let i = 0; i < 200 && (await counted('written')) + (await counted('rejected')) < total; i++) await new Promise((r) => setTimeout(r, 25));
}
const segment = (d: string) => path.join(d, 'segments', readdirSync(path.join(d, 'segments'))[0]!);
const entries = () => readFileSync(segment(dir), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

test("Envoy's decisions become entries of the sidecar's shape, and the log verifies", async () => {
  const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.sig';
  const batches = [
    [await envoy({ path: '/cards/1?secret=1' }), await envoy({ method: 'DELETE', path: '/cards/1' })],
    [await envoy({ fingerprint: false }), await envoy({ path: '/cards', user: { token, claims: { sub: 'alice', scope: 'list_cards' } } })],
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
  // The id Envoy gave that request (the builder numbers requests per process, not per file).
  assert.is(allowed.request_id, (batches[0]![0] as { request: { request_id: string } }).request.request_id);
  // Reduced: the rest of the JWS is the entry's own fields (audit/fingerprint.ts).
  assert.equal(Object.keys(allowed.fingerprint), ['iat', 'exp', 'jti', 'sig']);
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
    await envoy({ path: '/cards/7', fingerprint: forged }),
    // Another request's fingerprint under this request's decision.
    await envoy({ path: '/cards/9', loggedFingerprint: otherRequest }),
    // A certificate that is not the one its hash names, and one that does not name the URI.
    await envoy({ xfcc: xfcc(frontendCert, FRONTEND).replace(/Hash=[0-9a-f]{4}/, 'Hash=0000') }),
    await envoy({ xfcc: xfcc(cardCert, FRONTEND) }),
    // A decision record that is not one.
    await envoy({ decisionState: { type_url: 'type.googleapis.com/google.protobuf.BytesValue', value: Buffer.from(BytesValue.encode({ value: Buffer.from('{"decision":"allow"}') }).finish()) } }),
    await envoy({ decisionState: { type_url: 'type.googleapis.com/google.protobuf.StringValue', value: Buffer.from([10, 1, 120]) } }),
  ];
  const good = await envoy({ path: '/cards/10' });
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
  const refused = await stream([[await envoy()]], 'some.other.log');
  assert.is(refused?.code, 3); // INVALID_ARGUMENT
  assert.match(refused!.details, /palisade\.audit/);
  assert.is(log.tree.size, before);
});

test.run();
