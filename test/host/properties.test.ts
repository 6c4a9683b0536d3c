/**
 * The one fast path for properties (attributes.ts, Attributes.lookup) answers exactly what
 * the general walk answers. A request with an (empty) `properties` override takes the walk,
 * the same request without it the fast path: the module must read the same bytes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadFilter, type Filter, type FilterRequest } from '../../host/index.ts';
import { fixtureFilter } from './fixtures.ts';

let f: Filter;
test.before(async () => {
  f = await loadFilter(await fixtureFilter());
});
test.after(() => f.close());

/** What the module read at `path` ('/'-separated), as logged: `status=N value=<hex>`. */
async function read(path: string, extra: Partial<FilterRequest>): Promise<string> {
  const o = await f.handleRequest({ method: 'GET', path: '/', authority: 'svc', ...extra, headers: { 'x-test': `prop:${path}` } });
  return o.logs[0].message;
}

const claims = { 'envoy.filters.http.jwt_authn': { user: { sub: 'alice', scope: ['a', 'b'], n: 3, ok: true, nested: { x: null } } } };
const cases: [string, Partial<FilterRequest>][] = [
  ['caller', { source: { principal: 'spiffe://bank.example/ns/web/sa/frontend' } }],
  ['no caller', {}],
  ['claims', { metadata: claims }],
  ['no metadata', {}],
  ['metadata nested too deep', { metadata: { f: { v: JSON.parse('['.repeat(120) + ']'.repeat(120)) } } }],
];

for (const [what, request] of cases) {
  for (const path of ['connection/uri_san_peer_certificate', 'metadata']) {
    test(`${what}: ${path} reads the same through the fast path and the walk`, async () => {
      const fast = await read(path, request);
      const walked = await read(path, { ...request, properties: {} });
      assert.is(fast, walked);
    });
  }
}

test('an override wins over the fast path', async () => {
  const overridden = await read('connection/uri_san_peer_certificate', {
    source: { principal: 'spiffe://bank.example/ns/web/sa/frontend' },
    properties: { 'connection.uri_san_peer_certificate': 'spiffe://bank.example/ns/x/sa/other' },
  });
  assert.is(overridden, `status=0 value=${Buffer.from('spiffe://bank.example/ns/x/sa/other').toString('hex')}`);
});

test.run();
