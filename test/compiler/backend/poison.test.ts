/**
 * Poisoning attacks on a compiled policy filter in the strict host: one request carrying
 * claims nested thousands of levels deep, a huge claim set, a huge path or header block.
 * Each gets a bounded, fail-closed answer of its own, and the same loaded filter goes on
 * deciding the requests after it (a trap would fail the VM: 503 until reload, as Envoy).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileChecked } from '../../../compiler/index.ts';
import { loadFilter, type Filter, type FilterRequest } from '../../../host/filter.ts';
import { withFingerprint, withJwtAuthn } from '../../../testing/fingerprint.ts';
import type { PropertyValue } from '../../../host/properties.ts';
import { checked, SERVICE } from './helpers.ts';

const WEB = 'spiffe://corp.test/ns/web/sa/frontend';
const POLICY = checked([
  { id: 'read-account', effect: 'allow', from: [WEB], to: [{ methods: ['GET'], paths: ['/accounts/{id}'] }],
    when: "'read' in user.scopes && request.query['page'] != 'x'" },
  { id: 'health', effect: 'allow', from: [WEB], to: [{ methods: ['GET'], paths: ['/healthz'] }] },
]);

let filter: Filter;
let unsigned: Filter;
test.before(async () => {
  const { wasm } = await compileChecked(POLICY);
  filter = await loadFilter(wasm);
  unsigned = await loadFilter(wasm, { configuration: '{"fingerprint":"off"}' });
});
test.after(async () => {
  await filter?.close();
  await unsigned?.close();
});

const request = (path: string, over: Partial<FilterRequest> = {}): FilterRequest =>
  ({ method: 'GET', path, authority: 'api.corp.test', source: { principal: WEB }, ...over });
const signed = (r: FilterRequest) => withFingerprint(r, SERVICE);
const withUser = (r: FilterRequest, user: Record<string, unknown>) => withJwtAuthn(r, { user });

/** `levels` lists and Structs, alternating, around a scope string. */
function nested(levels: number): PropertyValue {
  let v: PropertyValue = 'read';
  for (let i = 0; i < levels; i++) v = i % 2 ? [v] : { a: v };
  return v;
}

async function decide(f: Filter, r: FilterRequest): Promise<{ status: number; reason: unknown }> {
  const o = await f.handleRequest(r);
  assert.not.ok(o.logs.some((l) => l.level === 'critical'), `no trap: ${o.logs.map((l) => l.message).join(' | ')}`);
  const line = o.logs.find((l) => l.message.startsWith('palisade.decision '));
  return { status: o.status, reason: line ? JSON.parse(line.message.slice('palisade.decision '.length)).reason : null };
}

/** The filter still decides normally: the VM did not fail. */
async function stillDeciding(f: Filter, sign: (r: FilterRequest) => FilterRequest): Promise<void> {
  assert.is(f.failed, null);
  assert.equal(await decide(f, sign(withUser(request('/accounts/7'), { scope: 'read' }))), { status: 200, reason: 'allow_rule' });
  assert.equal(await decide(f, sign(withUser(request('/accounts/7'), { scope: 'write' }))), { status: 403, reason: 'no_allow_rule' });
  assert.equal(await decide(f, sign(request('/healthz'))), { status: 200, reason: 'allow_rule' });
}

test('claims nested thousands of levels deep: 401 metadata_unreadable for that request, the next ones decide normally', async () => {
  for (const levels of [150, 3_000, 100_000]) {
    assert.equal(await decide(filter, signed(withUser(request('/accounts/7'), { scope: 'read', deep: nested(levels) }))),
      { status: 401, reason: 'metadata_unreadable' }, `user claims, ${levels} levels`);
    await stillDeciding(filter, signed);
    assert.equal(await decide(unsigned, withUser(request('/accounts/7'), { scp: nested(levels) })),
      { status: 401, reason: 'metadata_unreadable' }, `fingerprint off, ${levels} levels`);
    await stillDeciding(unsigned, (r) => r);
  }
});

test("a caller's own fingerprint carrying a deeply nested extra claim is refused for that request only", async () => {
  const r = signed(request('/healthz'));
  const fingerprint = { ...(r.metadata!['envoy.filters.http.jwt_authn'].fingerprint as Record<string, unknown>), x: nested(5_000) };
  assert.equal(await decide(filter, withJwtAuthn(r, { fingerprint })), { status: 401, reason: 'metadata_unreadable' });
  await stillDeciding(filter, signed);
});

test('claims nested up to the limit are still read', async () => {
  // jwt_authn Struct, user, deep: 3 levels of the 100 above `nested`
  assert.equal(await decide(filter, signed(withUser(request('/accounts/7'), { scope: 'read', deep: nested(97) }))), { status: 200, reason: 'allow_rule' });
});

test('a huge claim set: 401 metadata_too_large, then normal decisions', async () => {
  const claims: Record<string, unknown> = { scope: 'read' };
  for (let i = 0; i < 20_000; i++) claims[`claim${i}`] = `value ${i}`;
  assert.equal(await decide(filter, signed(withUser(request('/accounts/7'), claims))), { status: 401, reason: 'metadata_too_large' });
  await stillDeciding(filter, signed);
  assert.equal(await decide(unsigned, withUser(request('/accounts/7'), claims)), { status: 401, reason: 'metadata_too_large' });
  await stillDeciding(unsigned, (r) => r);
});

test('a huge path or header block: 400 of its own, then normal decisions, memory not kept in proportion', async () => {
  const bytes = () => (filter as unknown as { vm: { memory: WebAssembly.Memory } }).vm.memory.buffer.byteLength;
  await stillDeciding(filter, signed);
  const before = bytes();
  assert.equal(await decide(filter, signed(request(`/accounts/${'a/'.repeat(50_000)}`))), { status: 400, reason: 'path_too_long' });
  assert.equal(await decide(filter, signed(request(`/accounts/7?${'page=%41&'.repeat(10_000)}`))), { status: 400, reason: 'path_too_long' });
  const headers: Record<string, string> = {};
  for (let i = 0; i < 100_000; i++) headers[`x-h${i}`] = 'v'.repeat(10);
  assert.equal(await decide(filter, signed(request('/healthz', { headers }))), { status: 400, reason: 'headers_too_large' });
  assert.equal(await decide(filter, signed(request('/healthz', { headers: { 'x-request-id': 'r'.repeat(2_000_000) } }))), { status: 400, reason: 'headers_too_large' });
  await stillDeciding(filter, signed);
  // what the host copied in stays (as in Envoy), but nothing in proportion to the path was allocated
  assert.ok(bytes() - before < 8 * 1024 * 1024, `memory grew by ${bytes() - before} bytes`);
});

test('paths and headers under the limits are decided as before', async () => {
  assert.equal(await decide(filter, signed(withUser(request(`/accounts/7?${'q=1&'.repeat(10_000)}page=2`), { scope: 'read' }))), { status: 200, reason: 'allow_rule' });
  const headers: Record<string, string> = {};
  for (let i = 0; i < 1_000; i++) headers[`x-h${i}`] = 'v'.repeat(100);
  assert.equal(await decide(filter, signed(request('/healthz', { headers }))), { status: 200, reason: 'allow_rule' });
});

test('a secret in a query value lands in none of the log lines the filter writes', async () => {
  const secret = 'SECRET-5d2a9e';
  for (const r of [signed(withUser(request(`/accounts/7?access_token=${secret}`), { scope: 'read' })), signed(request(`/nowhere?access_token=${secret}`)),
    request(`/healthz?access_token=${secret}`)]) {
    const o = await filter.handleRequest(r);
    assert.ok(o.logs.length > 0);
    for (const line of o.logs) assert.not.ok(line.message.includes(secret), line.message);
  }
});

test.run();
