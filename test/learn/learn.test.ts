/** learn/'s generalizations at their documented thresholds, and its input errors (docs/cases.md, "palisade learn"). */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseObserved, ObservedError } from '../../learn/observed.ts';
import { templatesFor, uncovered } from '../../learn/paths.ts';
import { groupCallers } from '../../learn/callers.ts';
import { propose } from '../../learn/propose.ts';

const texts = (paths: string[], fanout = 20) => {
  const t = templatesFor(paths, fanout);
  return paths.map((p) => t.get(p)!.text);
};

test('identifier-like segments become parameters named after the literal before them; words stay literal', () => {
  assert.equal(texts(['/cards/42', '/cards/3f2a9c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b', '/blobs/0123456789abcdef0123', '/t/AbCdEfGhIjKlMnOpQrStU1v', '/v1/cards/export', '/entries/7/lines/8', '/a/1/2']),
    ['/cards/{card_id}', '/cards/{card_id}', '/blobs/{blob_id}', '/t/{t_id}', '/v1/cards/export', '/entries/{entry_id}/lines/{line_id}', '/a/{a_id}/{id}']);
});

test('paths are templated as the filter matches them: query dropped, dot segments and empty segments resolved', () => {
  assert.equal(texts(['/cards//7/./?page=', '/x/../y/%61']), ['/cards/{card_id}', '/y/a']);
});

test('a prefix becomes ** only above the fan-out threshold, and says how many paths it covers', () => {
  const twenty = Array.from({ length: 20 }, (_, i) => `/static/f${i}.js`);
  assert.equal(new Set(texts(twenty)).size, 20);
  const t = templatesFor([...twenty, '/static/f20.js', '/static'], 20);
  assert.is(t.get('/static/f3.js')!.text, '/static/**');
  assert.is(t.get('/static/f3.js')!.below.size, 21);
  assert.is(t.get('/static')!.text, '/static', '** needs one more segment: the prefix itself stays exact');
});

test('a literal that a parameter template of the same set covers is dropped, not listed twice', () => {
  const t = templatesFor(['/cards/7', '/cards/export'], 20);
  assert.equal(uncovered([...new Set(t.values())]).map((x) => x.text), ['/cards/{card_id}']);
});

test('callers become prefix/* only from the threshold of distinct IDs on', () => {
  const ids = (n: number) => Array.from({ length: n }, (_, i) => `spiffe://td/ns/web/w${i}`);
  assert.equal(groupCallers(ids(2), 3).map((g) => g.pattern), ids(2));
  assert.equal(groupCallers([...ids(3), 'spiffe://td/ns/ops/p'], 3).map((g) => [g.pattern, g.ids.size]), [['spiffe://td/ns/ops/p', 1], ['spiffe://td/ns/web/*', 3]]);
});

test('a line that is not one of the two log formats is one file:line error', () => {
  const ok = JSON.stringify({ caller: 'spiffe://td/a', target: 'spiffe://td/s', method: 'GET', path: '/x' });
  for (const [line, why] of [['{', 'not a JSON line'], ['[1]', 'not a JSON object'], ['{"method":"GET"}', 'no "target"'],
    [JSON.stringify({ service: 'spiffe://td/s', caller: { id: 7 }, method: 'GET', path: '/x' }), '"caller.id" must be'],
    [JSON.stringify({ caller: null, target: 'spiffe://td/s', method: 'GET', path: 'x' }), '"path" must be'],
    [JSON.stringify({ caller: null, target: 'https://td/../s', method: 'GET', path: '/x' }), '"target" is not a workload SPIFFE ID']]) {
    try {
      parseObserved('in.jsonl', `${ok}\n\n${line}\n`);
      assert.unreachable(line);
    } catch (err) {
      assert.instance(err, ObservedError);
      assert.ok((err as Error).message.startsWith(`in.jsonl:3: ${why}`), (err as Error).message);
    }
  }
});

test('requests no policy could allow are counted apart, not proposed: no caller, a malformed caller ID, a lowercase method, a path the filter refuses', () => {
  const service = 'spiffe://td/ns/s/sa/svc';
  const [p] = propose([
    { service, caller: 'spiffe://td/ns/a/sa/one', method: 'GET', path: '/x' },
    { service, caller: null, method: 'GET', path: '/y' },
    { service, caller: 'spiffe://td/ns/a/sa/../root', method: 'GET', path: '/z' },
    { service, caller: 'spiffe://td/ns/a/sa/one', method: 'get', path: '/w' },
    { service, caller: 'spiffe://td/ns/a/sa/one', method: 'GET', path: '/a%2Fb' },
    { service, caller: 'spiffe://td/ns/a/sa/one', method: 'GET', path: '/a%zz' },
  ], { group: 3, fanout: 20 });
  assert.is(p.unallowable, 5);
  assert.equal(p.policy.rules, [{ id: 'from-one', effect: 'allow', from: ['spiffe://td/ns/a/sa/one'], to: [{ methods: ['GET'], paths: ['/x'] }] }]);
});

test.run();
