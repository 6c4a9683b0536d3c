/**
 * End-to-end decisions: one policy compiled to wasm, run in the strict proxy-wasm host
 * (host/) exactly as Envoy would run it. Hostile paths, spoofed headers, dry-run,
 * missing identity, fail-closed claims, the decision record and memory stability.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileChecked } from '../../../compiler/index.ts';
import { loadFilter, type Filter, type FilterRequest } from '../../../host/filter.ts';
import fc from 'fast-check';
import { checked, refusesConfiguration, SERVICE } from './helpers.ts';
import { JWT_AUTHN, withFingerprint } from '../../../testing/fingerprint.ts';
import { decide, normalizePath } from '../../../testing/oracle.ts';

const WEB = 'spiffe://corp.test/ns/web/sa/frontend';
const OPS = 'spiffe://corp.test/ns/ops/sa/prober';
const POLICY = checked([
  { id: 'block-admin', effect: 'deny', to: [{ paths: ['/admin/**'] }] },
  { id: 'verified-email', effect: 'deny', to: [{ paths: ['/accounts/**'] }], when: 'user.claims.email_verified != true' },
  { id: 'read-account', effect: 'allow', from: [WEB], to: [{ methods: ['GET'], paths: ['/accounts/{id}', '/accounts/{id}/**'] }],
    when: "'read' in user.scopes", inject: { 'x-account': 'request.params.id', 'x-user': 'user.sub' } },
  { id: 'ops', effect: 'allow', from: ['spiffe://corp.test/ns/ops/**'], to: [{ methods: ['GET', 'HEAD'], paths: ['/healthz', '/Status'] }], inject: { 'x-ops': "'first'" } },
  { id: 'ops-again', effect: 'allow', from: [OPS], to: [{ methods: ['GET'], paths: ['/healthz'] }], inject: { 'x-ops': "'second'" } },
  { id: 'search', effect: 'allow', from: ['spiffe://corp.test/ns/*/sa/frontend'], to: [{ methods: ['GET'], paths: ['/search'] }],
    when: "request.query['q'] != '' && size(request.query['q']) < 20 && request.headers['x-tenant'].startsWith('t-')" },
  { id: 'post-anything', effect: 'allow', from: [WEB], to: [{ methods: ['POST'] }], when: 'user.claims.level >= 3' },
]);

let filter: Filter;
let dry: Filter;
test.before(async () => {
  const { wasm } = await compileChecked(POLICY);
  filter = await loadFilter(wasm);
  dry = await loadFilter(wasm, { configuration: '{"mode":"dry-run"}' });
  wasmBytes = wasm;
});
let wasmBytes: Uint8Array;
test.after(async () => {
  await filter?.close();
  await dry?.close();
});

const user = (claims: Record<string, unknown>) => ({ 'envoy.filters.http.jwt_authn': { user: claims } });
const req = (path: string, over: Partial<FilterRequest> = {}): FilterRequest => ({ method: 'GET', path, authority: 'api.corp.test', source: { principal: OPS }, ...over });

interface Seen { kind: string; status: number; record: Record<string, unknown>; upstream: Record<string, string[]>; body: string }
/**
 * Every request carries the fingerprint jwt_authn verified for it (test/fingerprint covers its
 * absence); one that already carries one keeps it.
 */
const signed = (r: FilterRequest): FilterRequest => (r.metadata?.[JWT_AUTHN]?.fingerprint ? r : withFingerprint(r, SERVICE));

async function run(r: FilterRequest, f = filter): Promise<Seen> {
  const o = await f.handleRequest(signed(r));
  const lines = o.logs.filter((l) => l.message.startsWith('palisade.decision '));
  assert.is(lines.length, 1, 'exactly one decision line per request');
  assert.is(lines[0].level, 'info');
  const upstream: Record<string, string[]> = {};
  for (const [k, v] of o.upstreamRequest?.headers ?? []) (upstream[k] ??= []).push(v);
  return { kind: o.kind, status: o.status, record: JSON.parse(lines[0].message.slice('palisade.decision '.length)), upstream, body: new TextDecoder().decode(o.body) };
}

async function expectStatus(path: string, status: number, rule: string | null = null, over: Partial<FilterRequest> = {}) {
  const s = await run(req(path, over));
  assert.is(s.status, status, `${path} → ${status}`);
  assert.is(s.record.rule, rule, `${path}: rule`);
  return s;
}

test('hostile paths: normalized like Envoy before matching, or rejected with 400', async () => {
  await expectStatus('/healthz', 200, 'ops');
  await expectStatus('//healthz', 200, 'ops');
  await expectStatus('/a/../healthz', 200, 'ops');
  await expectStatus('/./healthz/.', 403); // trailing slash: /healthz/ is another path
  await expectStatus('/%2e%2e/healthz', 200, 'ops');
  await expectStatus('/%68ealthz', 200, 'ops'); // unreserved escapes decode
  await expectStatus('/HEALTHZ', 403); // case-sensitive
  await expectStatus('/status', 403);
  await expectStatus('/Status', 200, 'ops');
  await expectStatus('/healthz/../admin/x', 403, 'block-admin');
  await expectStatus('/admin//x', 403, 'block-admin');
  await expectStatus('/adm%69n/x', 403, 'block-admin');
  for (const bad of ['/admin%2Fx', '/admin%2fx', '/a%5Cb', '/a%5cb', '/a\\b', '/healthz#frag', '/heal%00thz', '/a%zz', '/a%4', 'healthz', '*']) {
    const s = await expectStatus(bad, 400);
    assert.is(s.record.decision, 'deny');
    assert.is(s.record.reason, 'bad_path');
    assert.is(s.kind, 'reply');
  }
});

test('upstream receives the normalized path (query kept), untouched when already normal', async () => {
  const s = await run(req('/x/..//healthz?probe=1'));
  assert.equal(s.upstream[':path'], ['/healthz?probe=1']);
  assert.equal((await run(req('/healthz?a=%2F'))).upstream[':path'], ['/healthz?a=%2F']);
});

test('normalization: random byte-level paths are refused or forwarded exactly as the reference normalizer says', async () => {
  // The filter splits an already normal path in its first pass and sends the rest through
  // decode, dot segments and slash merging: paths from these characters reach both.
  const path = fc.string({ unit: fc.constantFrom('/', '/', '.', 'a', 'b', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', '0', '6', '1', '\\', '#', '?', '~'), maxLength: 14 });
  // Empty segments before `..` are where the order of dot removal and slash merging shows.
  for (const raw of ['/x//../cards/9', '/a//..', '/a///../../b', '/%3a/..//%3b']) {
    const s = await run(req(raw), dry);
    assert.equal(s.upstream[':path'], [normalizePath(raw)], raw);
  }
  await fc.assert(fc.asyncProperty(path, async (tail) => {
    const raw = `/${tail}`;
    const query = raw.includes('?') ? raw.slice(raw.indexOf('?')) : '';
    if (query.includes('%00')) return; // refused by the filter anywhere; the reference only looks at the path part
    const want = normalizePath(raw);
    const s = await run(req(raw), dry);
    if (want === null) assert.is(s.record.reason, 'bad_path', raw);
    else assert.equal(s.upstream[':path'], [want + query], raw);
  }), { numRuns: 600, seed: 20261129 });
});

test('no verified caller: 401 before any rule, body carries only error and request id', async () => {
  const s = await run(req('/healthz', { source: undefined, headers: { 'x-request-id': 'rid-"1"' } }));
  assert.is(s.status, 401);
  assert.equal(s.record, { decision: 'unauthenticated', status: 401, rule: null, mode: 'enforce', reason: 'no_identity' });
  assert.equal(JSON.parse(s.body), { error: 'unauthenticated', request_id: 'rid-"1"' });
  assert.is((await run(req('/healthz', { source: { principal: '' } }))).status, 401);
});

test('deny beats allow; missing or mistyped claim makes a deny rule apply (fail closed)', async () => {
  const as = (claims: Record<string, unknown>) => req('/accounts/7', { source: { principal: WEB }, metadata: user(claims) });
  let s = await run(as({ sub: 'alice', scope: 'read', email_verified: true }));
  assert.is(s.status, 200);
  assert.is(s.record.rule, 'read-account');
  s = await run(as({ sub: 'alice', scope: 'read', email_verified: false }));
  assert.equal([s.status, s.record.rule, s.record.reason], [403, 'verified-email', 'deny_rule']);
  s = await run(as({ sub: 'alice', scope: 'read' }));
  assert.equal([s.status, s.record.rule, s.record.reason], [403, 'verified-email', 'deny_rule_when_error']);
  s = await run(as({ sub: 'alice', scope: 'read', email_verified: 'true' }));
  assert.equal([s.status, s.record.reason], [403, 'deny_rule_when_error']);
  s = await run(req('/accounts/7', { source: { principal: WEB } })); // no identity context at all
  assert.equal([s.status, s.record.rule], [403, 'verified-email']);
  assert.equal(JSON.parse(s.body).error, 'forbidden');
});

test('injected headers: spoofed values replaced, other rules\' names stripped, first allow by index wins', async () => {
  const spoof = { 'x-account': ['evil', 'evil2'], 'x-user': 'mallory', 'x-ops': 'evil', 'x-keep': 'yes' };
  let s = await run(req('/accounts/7/statements', { source: { principal: WEB }, headers: spoof, metadata: user({ sub: 'alice', scope: 'read x', email_verified: true }) }));
  assert.is(s.record.rule, 'read-account');
  assert.equal(s.upstream['x-account'], ['7']);
  assert.equal(s.upstream['x-user'], ['alice']);
  assert.is(s.upstream['x-ops'], undefined);
  assert.equal(s.upstream['x-keep'], ['yes']);
  s = await run(req('/healthz', { headers: spoof }));
  assert.is(s.record.rule, 'ops'); // ops and ops-again both apply: rules[3] comes first
  assert.equal(s.upstream['x-ops'], ['first']);
  assert.is(s.upstream['x-account'], undefined);
  assert.is(s.upstream['x-user'], undefined);
});

test('query and headers in `when`; method buckets; dyn number comparison', async () => {
  const search = (path: string, tenant = 't-9') => req(path, { source: { principal: 'spiffe://corp.test/ns/mobile/sa/frontend' }, headers: { 'x-tenant': tenant } });
  assert.is((await run(search('/search?q=hello%20world&x=1'))).status, 200);
  assert.is((await run(search('/search?x=1&q='))).status, 403);
  assert.is((await run(search('/search?q=' + 'a'.repeat(20)))).status, 403);
  assert.is((await run(search('/search?q=a', 'u-1'))).status, 403);
  const post = (level: unknown) => req('/anything/at/all', { method: 'POST', source: { principal: WEB }, metadata: user({ level }) });
  assert.is((await run(post(3))).status, 200);
  assert.is((await run(post(2.5))).status, 403);
  assert.is((await run(post('3'))).status, 403); // a string claim is not a number: error, allow does not apply
  assert.is((await run(req('/anything', { method: 'PUT', source: { principal: WEB }, metadata: user({ level: 9 }) }))).status, 403);
});

test('dry-run from the plugin configuration: always forwarded, decision recorded, injectable names still stripped', async () => {
  let s = await run(req('/admin/x', { headers: { 'x-ops': 'evil' } }), dry);
  assert.equal([s.kind, s.status], ['forward', 200]);
  assert.equal(s.record, { decision: 'deny', status: 403, rule: 'block-admin', mode: 'dry-run', reason: 'deny_rule' });
  assert.is(s.upstream['x-ops'], undefined);
  s = await run(req('/healthz', { source: undefined }), dry);
  assert.equal([s.kind, s.record.decision, s.record.mode], ['forward', 'unauthenticated', 'dry-run']);
  s = await run(req('/healthz'), dry);
  assert.equal(s.upstream['x-ops'], ['first']);
  const m = dry.metrics();
  assert.ok(m['palisade_decisions.decision=deny'].value >= 1);
  assert.ok(m['palisade_decisions.decision=unauthenticated'].value >= 1);
  assert.ok(m['palisade_decisions.decision=allow'].value >= 1);
});

test('log level: below info the decision line is neither formatted nor logged; decision, reply and metric stay the same', async () => {
  const quiet = await loadFilter(wasmBytes, { logLevel: 'warn' });
  try {
    for (const [path, over] of [['/healthz', {}], ['/admin/x', {}], ['/x%2F', {}], ['/healthz', { source: undefined }]] as const) {
      const r = req(path, { ...over, headers: { 'x-request-id': 'rid-1' } });
      const loud = await filter.handleRequest(signed(r)); // each with its own fingerprint: both share the replay store
      const o = await quiet.handleRequest(signed(r));
      assert.is(o.logs.length, 0, path);
      assert.ok(loud.logs.some((l) => l.level === 'info' && l.message.startsWith('palisade.decision ')), path);
      assert.equal([o.kind, o.status, Buffer.from(o.body).toString(), o.upstreamRequest?.headers], [loud.kind, loud.status, Buffer.from(loud.body).toString(), loud.upstreamRequest?.headers], path);
    }
    const m = quiet.metrics();
    assert.equal([m['palisade_decisions.decision=allow'].value, m['palisade_decisions.decision=deny'].value, m['palisade_decisions.decision=unauthenticated'].value], [1, 2, 1]);
  } finally {
    await quiet.close();
  }
});

test('plugin configuration: anything but a valid one makes proxy_on_configure refuse the filter', async () => {
  for (const bad of ['{"mode":"permissive"}', 'nope', '{"mode":"dry-run","x":1}', '{"mode":"dry-run"} x', '[]', '{"mode":"dry-\\u0072un"}']) {
    assert.ok(await refusesConfiguration(wasmBytes, bad), bad);
  }
  const ok = await loadFilter(wasmBytes, { configuration: ' { "mode" : "enforce" } ' });
  assert.is((await run(req('/admin/x'), ok)).status, 403);
  await ok.close();
});

/**
 * Differential check against the front end's naive reference interpreter on random
 * requests. Known, deliberate differences are kept out of the generator: the oracle
 * decodes `+` in queries and lets the last duplicate win, drops empty segments before
 * resolving `..` (Envoy resolves first), and forwards an allow whose injection fails
 * (here such a rule does not apply); `sub` is therefore always present.
 */
test('differential: the filter decides like the reference interpreter on random requests', async () => {
  const segment = fc.constantFrom('healthz', 'Status', 'admin', 'accounts', 'search', '7', 'x', '..', '.', '%2e%2e', '%2F', '%5c', '%68ealthz', '#', '%zz', 'a%00');
  const path = fc.oneof(
    fc.tuple(fc.array(segment, { minLength: 0, maxLength: 4 }), fc.constantFrom('', '?q=a', '?q=', '?q=hello%20w&z=1', '?x=1')).map(([s, q]) => `/${s.join('/')}${q}`),
    fc.constantFrom('/accounts/7', '/accounts/7/statements', '/accounts/..//accounts/9', '/search?q=a', '/search?q=', '/healthz?x'),
  );
  const principal = fc.constantFrom(undefined, WEB, WEB, OPS, 'spiffe://corp.test/ns/mobile/sa/frontend', 'spiffe://corp.test/ns/ops/x/y', 'spiffe://evil.test/ns/ops/sa/prober');
  const claims = fc.option(fc.record({
    sub: fc.constantFrom('alice', 'bob'),
    scope: fc.option(fc.constantFrom('read', 'read write', 'write'), { nil: undefined }),
    email_verified: fc.option(fc.constantFrom(true, false, 'true'), { nil: undefined }),
    level: fc.option(fc.constantFrom(1, 3, 7.5, '3'), { nil: undefined }),
  }, { requiredKeys: ['sub'] }), { nil: undefined });
  const request = fc.record({ method: fc.constantFrom('GET', 'POST', 'HEAD', 'PUT'), path, source: principal, tenant: fc.constantFrom('t-1', 'u-1'), user: claims });
  const seen = new Set<string>();
  await fc.assert(fc.asyncProperty(request, async (r) => {
    const user = r.user && Object.fromEntries(Object.entries(r.user).filter(([, v]) => v !== undefined));
    const headers = { 'x-tenant': r.tenant, 'x-ops': 'spoof' };
    const sent = signed({ method: r.method, path: r.path, authority: 'api.corp.test', headers, source: r.source ? { principal: r.source } : undefined, metadata: user ? { [JWT_AUTHN]: { user } } : undefined });
    const fingerprint = sent.metadata?.[JWT_AUTHN]?.fingerprint;
    const expected = decide(POLICY, { method: r.method, path: r.path, headers, source: r.source, user, fingerprint });
    const s = await run(sent);
    assert.equal([s.record.decision, s.status, s.record.rule], [expected.decision, expected.status, expected.rule], JSON.stringify(r));
    seen.add(`${s.status} ${s.record.rule}`);
    if (expected.upstreamHeaders) {
      for (const name of ['x-account', 'x-user', 'x-ops']) assert.equal(s.upstream[name]?.[0], expected.upstreamHeaders[name], `${name} for ${JSON.stringify(r)}`);
    }
  }), { numRuns: 400, seed: 20261129 });
  for (const outcome of ['400 null', '401 null', '403 null', '403 block-admin', '403 verified-email', '200 ops', '200 read-account', '200 search', '200 post-anything']) {
    assert.ok(seen.has(outcome), `random requests never produced ${outcome}: ${[...seen].join(', ')}`);
  }
});

test('more than 31 distinct methods: method lists replace the bit mask, decisions unchanged', async () => {
  // 33 methods: a per-method bit would overflow, so emit.ts switches to method lists.
  const methods = Array.from({ length: 33 }, (_, i) => `M${String(i).padStart(2, '0')}`);
  const policy = checked([
    ...methods.map((m, i) => ({ id: `m${i}`, effect: 'allow', from: [WEB], to: [{ methods: [m], paths: [`/r${i % 3}`] }] })),
    { id: 'deny-last', effect: 'deny', to: [{ methods: ['M32', 'M31'], paths: ['/r2'] }] },
  ]);
  const { wasm } = await compileChecked(policy);
  const many = await loadFilter(wasm);
  try {
    const decisionOf = async (method: string, path: string) => {
      const o = await many.handleRequest(signed({ method, path, authority: 'api.corp.test', source: { principal: WEB } }));
      const line = o.logs.find((l) => l.message.startsWith('palisade.decision '))!;
      const record = JSON.parse(line.message.slice('palisade.decision '.length));
      return `${o.status} ${record.rule}`;
    };
    assert.is(await decisionOf('M00', '/r0'), '200 m0');
    assert.is(await decisionOf('M30', '/r0'), '200 m30');
    assert.is(await decisionOf('M31', '/r1'), '200 m31');
    assert.is(await decisionOf('M32', '/r2'), '403 deny-last');
    assert.is(await decisionOf('M31', '/r0'), '403 null', 'right method, wrong path');
    assert.is(await decisionOf('M00', '/r1'), '403 null', 'right path, wrong method');
    assert.is(await decisionOf('GET', '/r0'), '403 null', 'a method no rule names');
  } finally {
    await many.close();
  }
});

test('memory: steady state after warm-up — no growth over 20,000 mixed requests', async () => {
  const mix = [req('/healthz'), req('/admin/../accounts/1', { source: { principal: WEB }, metadata: user({ sub: 'a', scope: 'read', email_verified: true }) }), req('/bad%2F'), req('/x', { source: undefined })];
  const pages = () => ((filter as unknown as { vm: { memory: WebAssembly.Memory } }).vm.memory.buffer.byteLength);
  for (let i = 0; i < 200; i++) await filter.handleRequest(signed(mix[i % mix.length]));
  const before = pages();
  for (let i = 0; i < 20_000; i++) await filter.handleRequest(signed(mix[i % mix.length]));
  assert.is(pages(), before);
  assert.is(filter.failed, null);
});

test.run();
