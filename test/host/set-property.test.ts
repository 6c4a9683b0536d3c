/**
 * proxy_set_property as Envoy implements it (context.cc setProperty, CelState with the
 * default prototype): the key is taken whole, NULs included, and stored as filter state
 * `wasm.<key>`; the value is bytes, replaceable (not read-only), and lives as long as the
 * stream. `proxy_get_property` finds it by its first path segment after Envoy's own
 * attributes, and `filter_state` reads it under its full name.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadFilter, type Filter, type Outcome } from '../../host/index.ts';
import { fixtureFilter } from './fixtures.ts';

let f: Filter;
test.before(async () => {
  f = await loadFilter(await fixtureFilter());
});
test.after(() => f.close());

const OK = 0;
const NOT_FOUND = 1;
const hex = (s: string) => Buffer.from(s).toString('hex');

/** Sets `key` ('/' for NUL) to each of `values` in turn, then reads each of `reads`. */
function setThenRead(key: string, values: string, reads: string[]): Promise<Outcome> {
  return f.handleRequest({ method: 'GET', path: '/cards', authority: 'svc', headers: { 'x-test': `setprop:${key}`, 'x-value': values, 'x-read': reads.join(',') } });
}

const messages = (o: Outcome) => o.logs.map((l) => l.message);

test('a value set is filter state wasm.<key>, read back by its key as bytes', async () => {
  const o = await setThenRead('palisade.decision', '{"decision":"allow"}', ['palisade.decision', 'filter_state/wasm.palisade.decision']);
  assert.equal(messages(o), ['set=0', `status=${OK} value=${hex('{"decision":"allow"}')}`, `status=${OK} value=${hex('{"decision":"allow"}')}`]);
  assert.equal([...o.filterState], [['wasm.palisade.decision', new TextEncoder().encode('{"decision":"allow"}')]]);
});

test('the key is one name, NULs included: Envoy does not split it into a path', async () => {
  const o = await setThenRead('a/b', 'v', ['a.b', 'a/b', 'a']);
  assert.equal(messages(o), ['set=0', `status=${NOT_FOUND} value=`, `status=${NOT_FOUND} value=`, `status=${NOT_FOUND} value=`]);
  assert.equal([...o.filterState.keys()], ['wasm.a\0b']);
});

test('a value can be replaced, and an empty one is a value', async () => {
  const o = await setThenRead('k', 'first,second,', ['k']);
  assert.equal(messages(o), ['set=0', 'set=0', 'set=0', `status=${OK} value=`]);
});

test('bytes have no fields: a longer path is NOT_FOUND', async () => {
  const o = await setThenRead('k', 'v', ['k/x']);
  assert.equal(messages(o).at(-1), `status=${NOT_FOUND} value=`);
});

test("Envoy's attributes come first: a value named like one is set but never read in its place", async () => {
  const o = await setThenRead('request', 'mine', ['request/path', 'filter_state/wasm.request']);
  assert.equal(messages(o), ['set=0', `status=${OK} value=${hex('/cards')}`, `status=${OK} value=${hex('mine')}`]);
});

test('filter state lives as long as its stream', async () => {
  await setThenRead('palisade.decision', 'v', []);
  const o = await f.handleRequest({ method: 'GET', path: '/', authority: 'svc', headers: { 'x-test': 'prop:palisade.decision' } });
  assert.equal(messages(o), [`status=${NOT_FOUND} value=`]);
  assert.equal(o.filterState.size, 0);
});

test('filter_state reads only names that were set; the whole map cannot be serialized', async () => {
  const o = await setThenRead('k', 'v', ['filter_state/k', 'filter_state']);
  assert.equal(messages(o), ['set=0', `status=${NOT_FOUND} value=`, 'status=3 value=']);
});

test.run();
