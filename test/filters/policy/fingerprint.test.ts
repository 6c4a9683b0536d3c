/**
 * The compiled policy filter enforcing the fingerprint claims Envoy's jwt_authn verified
 * (filters/policy/fingerprint.ts): every failure class is a 401 with its reason, jti replay is
 * caught across requests and across filter instances of one VM id, a full replay slot fails
 * closed, `{"fingerprint":"off"}` turns the check off and bad configuration is refused.
 * Real compiler, strict host.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EcdsServer } from '../../../agent/xds/ecds.ts';
import { loadFilter, type Filter, type FilterRequest, type LoadOptions } from '../../../host/filter.ts';
import { fingerprintClaims, withJwtAuthn } from '../../../testing/fingerprint.ts';
import { getSharedData, setSharedData } from '../../../host/shared.ts';
import { compiledRules, refusesConfiguration, SERVICE } from '../../compiler/backend/helpers.ts';
import { compiledFile } from '../../support/compiled.ts';

const CALLER = 'spiffe://corp.test/ns/web/sa/frontend';
const OTHER = 'spiffe://corp.test/ns/web/sa/other';
let wasm: Uint8Array;
const open: Filter[] = [];

/** A filter on its own VM id (its own replay store) unless one is given. */
async function load(options: LoadOptions = {}): Promise<Filter> {
  const f = await loadFilter(wasm, { vmId: `fp-${randomUUID()}`, ...options });
  open.push(f);
  return f;
}

test.before(async () => {
  ({ wasm } = await compiledRules([{ id: 'read', effect: 'allow', from: [CALLER], to: [{ methods: ['GET'], paths: ['/items/{id}'] }] }]));
});
test.after(async () => {
  for (const f of open) await f.close();
});

const base: FilterRequest = { method: 'GET', path: '/items/7?full=1', authority: 'api', source: { principal: CALLER } };
const now = () => Math.floor(Date.now() / 1000);
/** Verified claims for `base`, changed by `over` (undefined removes a claim). */
function claims(over: Record<string, unknown> = {}): Record<string, unknown> {
  const c = { ...fingerprintClaims({ caller: CALLER, service: SERVICE, method: 'GET', path: base.path }), ...over };
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  return c;
}
const signed = (fingerprint: unknown, r = base) => withJwtAuthn(r, { fingerprint });

async function decide(f: Filter, r: FilterRequest) {
  const o = await f.handleRequest(r);
  const line = o.logs.find((l) => l.message.startsWith('palisade.decision '));
  const record = JSON.parse(line!.message.slice('palisade.decision '.length));
  return { status: o.status, kind: o.kind, reason: record.reason as string, decision: record.decision as string, mode: record.mode as string };
}

async function expectRefused(f: Filter, r: FilterRequest, reason: string) {
  const d = await decide(f, r);
  assert.equal([d.status, d.decision, d.reason], [401, 'unauthenticated', reason], reason);
}

test('a verified fingerprint for this caller, service and request is allowed; htu ignores the query', async () => {
  const f = await load();
  const d = await decide(f, signed(claims()));
  assert.equal([d.status, d.reason], [200, 'allow_rule']);
});

test('every failure class is 401 with its reason', async () => {
  const f = await load();
  const t = now();
  await expectRefused(f, base, 'fingerprint_missing');
  await expectRefused(f, withJwtAuthn(base, { user: { sub: 'alice' } }), 'fingerprint_missing'); // jwt_authn entry without fingerprint
  await expectRefused(f, signed('not a struct'), 'fingerprint_malformed');
  await expectRefused(f, signed(claims({ jti: undefined })), 'fingerprint_malformed');
  await expectRefused(f, signed(claims({ iat: String(t) })), 'fingerprint_malformed');
  await expectRefused(f, signed(claims({ aud: [SERVICE] })), 'fingerprint_malformed'); // a list aud is not this service
  await expectRefused(f, signed(claims({ sub: OTHER, iss: OTHER })), 'fingerprint_sub');
  await expectRefused(f, signed(claims({ iss: OTHER })), 'fingerprint_iss');
  await expectRefused(f, signed(claims({ aud: 'spiffe://corp.test/ns/app/sa/other' })), 'fingerprint_aud');
  await expectRefused(f, signed(claims({ htm: 'POST' })), 'fingerprint_htm');
  await expectRefused(f, signed(claims({ htu: '/items/8' })), 'fingerprint_htu');
  await expectRefused(f, signed(claims({ htu: '/items/7?full=1' })), 'fingerprint_htu'); // the query is not signed
  // Compared with the path as received, before normalization: what the caller signed.
  await expectRefused(f, signed(claims({ htu: '/items/7' }), { ...base, path: '//items/7' }), 'fingerprint_htu');
  await expectRefused(f, signed(claims({ iat: t - 40, exp: t - 10 })), 'fingerprint_exp');
  await expectRefused(f, signed(claims({ iat: t + 60, exp: t + 70 })), 'fingerprint_iat'); // future beyond the 5 s skew
  await expectRefused(f, signed(claims({ iat: t - 60, exp: t + 5 })), 'fingerprint_iat'); // stale
  await expectRefused(f, signed(claims({ iat: t, exp: t + 3600 })), 'fingerprint_lifetime');
  // Within the skew both ways is fine.
  assert.is((await decide(f, signed(claims({ iat: t + 4, exp: t + 30 })))).status, 200);
  assert.is((await decide(f, signed(claims({ iat: t - 30, exp: t - 3 })))).status, 200);
});

test('claims past one-byte protobuf lengths (long jti, extra claims, a large user Struct beside them) are read like short ones', async () => {
  // The readers take entries and Values with one-byte lengths in place and loop over anything
  // else: these claims reach both.
  const f = await load();
  const long = { jti: `${randomUUID()}-${'j'.repeat(300)}`, nbf: now() - 1, ath: 'a'.repeat(200) };
  const user = { sub: 'alice', scope: Array.from({ length: 40 }, (_, i) => `scope-${i}`).join(' ') };
  const r = withJwtAuthn(base, { user, fingerprint: claims(long) });
  assert.equal((await decide(f, r)).reason, 'allow_rule');
  await expectRefused(f, withJwtAuthn(base, { user, fingerprint: claims(long) }), 'fingerprint_replay');
  await expectRefused(f, withJwtAuthn(base, { user, fingerprint: claims({ ...long, jti: undefined }) }), 'fingerprint_malformed');
});

test('a jti is accepted once per VM: the replay is 401, a fresh jti passes', async () => {
  const f = await load();
  const first = claims();
  assert.is((await decide(f, signed(first))).status, 200);
  await expectRefused(f, signed({ ...first }), 'fingerprint_replay');
  assert.is((await decide(f, signed(claims()))).status, 200);
  // A refused fingerprint records nothing: its jti still works once with valid claims.
  const jti = randomUUID();
  await expectRefused(f, signed(claims({ jti, htu: '/x' })), 'fingerprint_htu');
  assert.is((await decide(f, signed(claims({ jti })))).status, 200);
});

test('the replay store is shared by filter instances of one VM id, not across VM ids', async () => {
  const vmId = `fp-shared-${randomUUID()}`;
  const a = await load({ vmId });
  const b = await load({ vmId });
  const other = await load();
  const c = claims();
  assert.is((await decide(a, signed(c))).status, 200);
  await expectRefused(b, signed({ ...c }), 'fingerprint_replay');
  assert.is((await decide(other, signed({ ...c }))).status, 200);
});

/** The slot key and jti hash filters/policy/fingerprint.ts uses (FNV-1a 64, slot = (h ^ h >> 32) mod 16384). */
function slotOf(jti: string): { key: string; hash: bigint } {
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(jti)) h = ((h ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return { key: `palisade.jti.${(h ^ (h >> 32n)) % 16384n}`, hash: h };
}

/** A slot value of 16 entries (u64 hash, u32 expiry, u32 0) expiring at `expiry`. */
function slotOfEntries(expiry: number, count = 16): Uint8Array {
  const out = Buffer.alloc(count * 16);
  for (let i = 0; i < count; i++) {
    out.writeBigUInt64LE(BigInt(i + 1) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn, i * 16);
    out.writeUInt32LE(expiry, i * 16 + 8);
  }
  return out;
}

test('a slot full of live entries fails closed and is counted; expired entries are reused', async () => {
  const vmId = `fp-full-${randomUUID()}`;
  const f = await load({ vmId });
  const live = claims();
  setSharedData(vmId, slotOf(live.jti as string).key, slotOfEntries(now() + 60), 0);
  await expectRefused(f, signed(live), 'fingerprint_replay_full');
  assert.is(f.metrics()['palisade_fingerprint_replay_full'].value, 1);

  const reuse = claims();
  const { key, hash } = slotOf(reuse.jti as string);
  setSharedData(vmId, key, slotOfEntries(now() - 1), 0);
  assert.is((await decide(f, signed(reuse))).status, 200);
  const stored = Buffer.from(getSharedData(vmId, key)!.value);
  assert.is(stored.length, 16 * 16, 'the slot did not grow');
  assert.is(stored.readBigUInt64LE(0), hash, 'the first expired entry was replaced');
  await expectRefused(f, signed({ ...reuse }), 'fingerprint_replay');
});

test('{"fingerprint":"off"}: no fingerprint needed (plain mTLS), identity still required', async () => {
  const f = await load({ configuration: '{"fingerprint":"off"}' });
  assert.is((await decide(f, base)).status, 200);
  assert.is((await decide(f, { ...base, source: undefined })).reason, 'no_identity');
  const required = await load({ configuration: '{ "mode": "enforce", "fingerprint": "required" }' });
  await expectRefused(required, base, 'fingerprint_missing');
  const ecdsDefault = await load({ configuration: '{}' }); // what ECDS serves without an override
  await expectRefused(ecdsDefault, base, 'fingerprint_missing');
});

test('dry-run: a refused fingerprint is recorded as unauthenticated and forwarded, like a missing identity', async () => {
  const f = await load({ configuration: '{"mode":"dry-run"}' });
  const d = await decide(f, base);
  assert.equal([d.kind, d.decision, d.status, d.mode, d.reason], ['forward', 'unauthenticated', 200, 'dry-run', 'fingerprint_missing']);
});

test('invalid fingerprint configuration is refused by proxy_on_configure', async () => {
  for (const bad of ['{"fingerprint":"maybe"}', '{"fingerprint":false}', '{"fingerprint":"off","fingerprint":"off"}', '{"fingerprint":"OFF"}', '{"fingerprint":"off","x":1}', '{"fingerprint":null}']) {
    assert.ok(await refusesConfiguration(wasm, bad), bad);
  }
});

test('the plugin configuration ECDS serves (default and dry-run) keeps fingerprints required', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'palisade-fp-ecds-'));
  const ecds = new EcdsServer({ codeDir: path.join(dir, 'ecds') });
  try {
    const source = 'examples/card-service/card-service.policy.json';
    const compiled = await compiledFile(source);
    writeFileSync(path.join(dir, compiled.manifest.wasm.file), compiled.wasm);
    const manifest = path.join(dir, 'card-service.manifest.json');
    writeFileSync(manifest, JSON.stringify(compiled.manifest));
    for (const configuration of [undefined, { mode: 'dry-run' }]) {
      const p = ecds.publish(manifest, configuration ? { configuration } : {});
      const f = await loadFilter(readFileSync(p.wasmPath), { configuration: p.configuration, rootId: p.resource, vmId: `fp-${randomUUID()}` });
      open.push(f);
      const d = await decide(f, { method: 'GET', path: '/cards', authority: 'card', source: { principal: 'spiffe://bank.example/ns/web/sa/frontend' } });
      assert.is(d.reason, 'fingerprint_missing', p.configuration);
    }
  } finally {
    ecds.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
