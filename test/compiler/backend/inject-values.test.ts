/**
 * Injected headers cannot smuggle: a compiled policy filter in the strict host never sets a
 * value that is not an RFC 9110 field value (a percent-decoded query parameter or a claim
 * can hold CR, LF, NUL); the request fails closed with its own reason instead of being
 * forwarded with the value, a cut value, or without it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileChecked } from '../../../compiler/index.ts';
import { loadFilter, type Filter, type FilterRequest } from '../../../host/filter.ts';
import { withFingerprint, withJwtAuthn } from '../../../testing/fingerprint.ts';
import { checked, SERVICE } from './helpers.ts';

const CALLER = 'spiffe://corp.test/ns/web/sa/frontend';
const POLICY = checked([
  { id: 'echo', effect: 'allow', to: [{ paths: ['/echo'] }], inject: { 'x-who': "request.query['who']", 'x-user': 'user.sub' } },
]);

let wasm: Uint8Array;
let filter: Filter;
test.before(async () => {
  wasm = (await compileChecked(POLICY)).wasm;
  filter = await loadFilter(wasm);
});
test.after(() => filter?.close());

async function call(query: string, sub = 'alice', f = filter) {
  const base: FilterRequest = { method: 'GET', path: `/echo?who=${query}`, authority: 'api', source: { principal: CALLER }, headers: { 'x-who': 'spoofed' } };
  const o = await f.handleRequest(withJwtAuthn(withFingerprint(base, SERVICE), { user: { sub } }));
  const line = o.logs.find((l) => l.message.startsWith('palisade.decision '))!;
  const upstream = o.upstreamRequest?.headers.filter(([k]) => k === 'x-who' || k === 'x-user') ?? null;
  return { ...JSON.parse(line.message.slice('palisade.decision '.length)), status: o.status, kind: o.kind, upstream };
}

test('a query parameter that decodes to CR, LF or another control character is never injected: 403, not forwarded', async () => {
  for (const smuggled of ['a%0D%0Ax-admin:%20true', 'a%0Ax-admin:%20true', 'a%0Db', 'a%01b', '%1B[31m', 'a%7Fb', 'a%0B', 'a%0C']) {
    const d = await call(smuggled);
    assert.equal([d.status, d.kind, d.decision, d.rule, d.reason, d.upstream], [403, 'reply', 'deny', 'echo', 'inject_invalid_value', null], smuggled);
  }
});

test('a claim that would smuggle a header, or be cut at a NUL, is never injected either', async () => {
  for (const sub of ['alice\r\nx-admin: true', 'alice\0admin']) {
    const d = await call('bob', sub);
    assert.equal([d.status, d.reason, d.upstream], [403, 'inject_invalid_value', null], JSON.stringify(sub));
  }
});

test('a NUL in the query is refused earlier, with the path (400 bad_path)', async () => {
  const d = await call('a%00b');
  assert.equal([d.status, d.reason, d.upstream], [400, 'bad_path', null]);
});

test('field values pass exactly: visible characters, space, tab and obs-text (UTF-8)', async () => {
  const d = await call('a%20b%09c%C3%A9~', 'Zoë');
  assert.equal([d.status, d.reason], [200, 'allow_rule']);
  assert.equal(d.upstream, [['x-who', 'a b\tcé~'], ['x-user', 'Zoë']]);
});

test('dry-run forwards as always, but never with the refused value (the injected names are stripped)', async () => {
  const dry = await loadFilter(wasm, { configuration: '{"mode":"dry-run"}' });
  try {
    const d = await call('a%0D%0Ax-admin:%20true', 'alice', dry);
    assert.equal([d.status, d.kind, d.mode, d.reason], [200, 'forward', 'dry-run', 'inject_invalid_value']);
    assert.equal(d.upstream, []);
  } finally {
    await dry.close();
  }
});

test.run();
