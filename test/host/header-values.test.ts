/**
 * The strict host refuses header values that are not RFC 9110 field values, as Envoy's
 * header validator does (and as its header map asserts for NUL, CR, LF): the module gets
 * BAD_ARGUMENT, the map keeps what it had, and the stream is reset, so a filter that ignores
 * the status cannot have its request forwarded (or a `palisade test` case report 200).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadFilter, type Filter, type Outcome } from '../../host/index.ts';
import { fixtureFilter } from './fixtures.ts';

let filter: Filter;
test.before(async () => {
  filter = await loadFilter(await fixtureFilter());
});
test.after(async () => {
  await filter?.close();
});

const BAD_ARGUMENT = 'smuggle=2';
const messages = (o: Outcome) => o.logs.map((l) => l.message);
const run = (op: string) => filter.handleRequest({ method: 'GET', path: '/', authority: 'api', headers: { 'x-test': op, 'x-smuggled': 'from the caller' } });

test('add, replace and set_header_map_pairs refuse CR, LF, NUL and DEL: BAD_ARGUMENT, and the request is never forwarded', async () => {
  for (const how of ['replace', 'add', 'pairs']) {
    for (const kind of ['crlf', 'lf', 'nul', 'del']) {
      const o = await run(`smuggle:${how}:${kind}`);
      const at = `${how} ${kind}`;
      assert.ok(messages(o).includes(BAD_ARGUMENT), at);
      assert.equal([o.kind, o.details, o.upstreamRequest], ['reset', 'wasm_invalid_header_value', null], at);
    }
  }
});

test('a response header value is refused the same way', async () => {
  const o = await run('smuggle:response:crlf');
  assert.ok(messages(o).includes(BAD_ARGUMENT));
  assert.equal([o.kind, o.status, o.details], ['reset', 0, 'wasm_invalid_header_value']);
});

test('field values are set as given: visible characters, space, tab, obs-text', async () => {
  for (const how of ['replace', 'add', 'pairs']) {
    const o = await run(`smuggle:${how}:ok`);
    assert.ok(messages(o).includes('smuggle=0'), how);
    assert.is(o.kind, 'forward', how);
    const values = o.upstreamRequest!.headers.filter(([k]) => k === 'x-smuggled').map(([, v]) => v);
    assert.equal(values, how === 'add' ? ['from the caller', 'café\tok'] : ['café\tok'], how);
  }
});

test.run();
