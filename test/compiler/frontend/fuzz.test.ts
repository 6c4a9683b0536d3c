/**
 * Property: whatever a policy file holds, analyze() never throws and answers either a
 * policy with no errors or at least one error, every diagnostic at a real line:col of the
 * file with a JSON pointer.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { analyze } from '../../../compiler/frontend/index.ts';
import { SERVICE } from './helpers.ts';

const VALID = {
  palisade: 1,
  name: 'card-service',
  service: SERVICE,
  mode: 'enforce',
  rules: [
    {
      id: 'list-cards',
      effect: 'allow',
      from: ['spiffe://bank.example/ns/web/sa/frontend', 'spiffe://bank.example/ns/ops/*', 'spiffe://bank.example/ns/batch/**'],
      to: [{ methods: ['GET'], paths: ['/cards/{id}', '/users/{uid}/cards/{id}/**'] }],
      when: "'list_cards' in user.scopes && user.claims.acr == 'mfa' && size(request.headers['x-a']) < 10",
      inject: { 'x-user-id': 'user.sub', 'x-card': 'request.params.id' },
    },
    { id: 'no-pii', effect: 'deny', to: [{ paths: ['/pii/**'] }], when: "!('pii' in user.scopes) || user.claims.consent != true" },
  ],
};

/** Fragments that make expressions, valid and not: the parser and checker must take them all. */
const FRAGMENTS = [
  'request.method', 'request.path', 'request.host', 'request.headers', "request.headers['X-A']", 'request.query.page',
  'request.params.id', 'request.params.nope', 'source.principal', 'user.sub', 'user.scopes', 'user.claims', 'user.claims.a.b',
  'request', 'user', 'requst.method', '==', '!=', '<', '<=', '>', '>=', '&&', '||', '!', 'in', '(', ')', '[', ']', ',', '.',
  "'s'", '"d"', "'\\u0041'", "'\\q'", "'open", '1', '-2.5', '1e999', 'true', 'false', 'size(', 'size(x)', '.startsWith(',
  '.contains("a")', '.endsWith', '[1, 2]', "['a', 1]", '[]', '=', '&', '#', '\\', '\n', '\u00e9', '%2F',
];
const expression = fc.oneof(
  fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 12 }).map((parts) => parts.join(' ')),
  fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 12 }).map((parts) => parts.join('')),
  fc.string({ maxLength: 30 }),
);
const shaped = fc.oneof(
  expression,
  fc.constantFrom('/cards/{id}', '/a/../b', '/a//b', '/a/%2F', '/a/{id}/{id}', '/**/a', '/x?y', 'spiffe://bank.example/a/**',
    'spiffe://Bank/a', 'spiffe://a/./b', 'spiffe://a', 'GET', 'get', 'x-palisade-x', ':path', 'Host', 'dry-run', 'deny'),
  fc.string({ unit: 'binary', maxLength: 20 }),
);

type Mutation = { at: number; op: 'delete' | 'json' | 'string' | 'key' | 'dup'; json: unknown; text: string };
const mutation: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(),
  op: fc.constantFrom('delete', 'json', 'string', 'key', 'dup'),
  json: fc.jsonValue({ maxDepth: 2 }),
  text: shaped,
});

/** Every [container, key] in the document, the root's holder included. */
function slots(v: unknown, holder: Record<string, unknown>, key: string, out: [Record<string, unknown>, string][] = []) {
  out.push([holder, key]);
  if (v && typeof v === 'object') {
    for (const k of Object.keys(v)) slots((v as Record<string, unknown>)[k], v as Record<string, unknown>, k, out);
  }
  return out;
}

function mutate(doc: unknown, mutations: Mutation[]): unknown {
  const root = { doc: structuredClone(doc) as unknown };
  for (const m of mutations) {
    const all = slots(root.doc, root, 'doc');
    const [holder, key] = all[m.at % all.length];
    const value = holder[key];
    if (m.op === 'delete') {
      if (Array.isArray(holder)) holder.splice(Number(key), 1);
      else if (holder !== root) delete holder[key];
    } else if (m.op === 'json') holder[key] = m.json;
    else if (m.op === 'string') holder[key] = m.text;
    else if (m.op === 'key' && value && typeof value === 'object' && !Array.isArray(value)) (value as Record<string, unknown>)[m.text] = m.json;
    else if (m.op === 'dup' && Array.isArray(value) && value.length) value.push(structuredClone(value[0]));
  }
  return root.doc;
}

function assertWellFormed(text: string) {
  const result = analyze('f.policy.json', text);
  const lines = text.split('\n');
  const errors = result.diagnostics.filter((d) => d.severity === 'error');
  assert.ok(result.policy ? errors.length === 0 : errors.length > 0, 'a policy, or at least one error');
  for (const d of result.diagnostics) {
    const { line, col, pointer, file } = d.span;
    assert.is(file, 'f.policy.json');
    assert.ok(Number.isInteger(line) && line >= 1 && line <= lines.length, `line ${line} of ${lines.length}: ${d.message}`);
    assert.ok(Number.isInteger(col) && col >= 1 && col <= lines[line - 1].length + 1, `col ${col} on line ${line}: ${d.message}`);
    assert.ok(pointer === '' || pointer.startsWith('/'), pointer);
    assert.ok(d.message.length > 0 && !/undefined|\[object /.test(d.message), d.message);
  }
  if (result.policy) JSON.stringify(result.policy); // plain data
}

test('the base policy is valid', () => {
  assert.ok(analyze('f.policy.json', JSON.stringify(VALID, null, 2)).policy);
});

test('structural mutations and random strings only ever produce diagnostics', () => {
  fc.assert(
    fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.boolean(), (mutations, pretty) => {
      assertWellFormed(JSON.stringify(mutate(VALID, mutations), null, pretty ? 2 : undefined));
    }),
    { numRuns: 600 },
  );
});

test('random expressions in when and inject only ever produce diagnostics', () => {
  fc.assert(
    fc.property(expression, expression, (when, inject) => {
      const rule = { ...VALID.rules[0], when, inject: { 'x-a': inject } };
      assertWellFormed(JSON.stringify({ ...VALID, rules: [rule] }, null, 2));
    }),
    { numRuns: 600 },
  );
});

test('byte-level damage to the text only ever produces diagnostics', () => {
  const text = JSON.stringify(VALID, null, 2);
  fc.assert(
    fc.property(fc.nat(text.length), fc.nat(8), fc.string({ unit: 'binary', maxLength: 4 }), (at, cut, insert) => {
      assertWellFormed(text.slice(0, at) + insert + text.slice(at + cut));
    }),
    // Found by this property: a raw line break and NUL inside the first `when` string, and
    // lone CRs (which momoa took for line breaks) before a syntax error.
    { numRuns: 600, examples: [[590, 0, '\n\u0000'], [1004, 4, '\r'], [305, 5, '\r']] },
  );
});

test.run();
