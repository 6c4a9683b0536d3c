/**
 * Policies sized to break a compiler (docs/policy.md, "Diagnostics": limits): path templates of thousands of
 * segments, literals of hundreds of KB, absurd JSON nesting, hundreds of rules each with its
 * own `when`. Each gets a located diagnostic or compiles to a filter that decides correctly
 * in the real host; none may end in a stack overflow. (Compile time of the 10,000-`when`
 * policy is measured by bench/compile.ts, not here.)
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compilePolicy, type CompileResult } from '../../../compiler/index.ts';
import { MAX_TEMPLATE_SEGMENTS } from '../../../compiler/frontend/path-template.ts';
import { MAX_JSON_DEPTH } from '../../../compiler/frontend/source.ts';
import { MAX_PATH_BYTES } from '../../../compiler/frontend/request-limits.ts';
import { loadFilter, type Filter } from '../../../host/filter.ts';
import { withFingerprint } from '../../../testing/fingerprint.ts';
import { policyText, SERVICE } from './helpers.ts';

const CALLER = 'spiffe://corp.test/ns/web/sa/frontend';

function compiled(r: CompileResult) {
  if (!r.ok) throw new Error(`does not compile: ${r.diagnostics[0]?.message.slice(0, 200)}`);
  return r;
}

/** Status and deciding rule of one GET through the real host. */
async function decide(filter: Filter, path: string): Promise<{ status: number; rule: string | null }> {
  const o = await filter.handleRequest(withFingerprint({ method: 'GET', path, authority: 'api.corp.test', source: { principal: CALLER } }, SERVICE));
  const line = o.logs.find((l) => l.message.startsWith('palisade.decision '));
  assert.ok(line, `a decision for ${path.slice(0, 40)}: ${o.logs.map((l) => l.message).join(' | ')}`);
  return { status: o.status, rule: JSON.parse(line.message.slice('palisade.decision '.length)).rule };
}

async function withFilter(wasm: Uint8Array, body: (f: Filter) => Promise<void>): Promise<void> {
  const f = await loadFilter(wasm);
  try {
    await body(f);
  } finally {
    await f.close();
  }
}

test('a path template of thousands of segments: one diagnostic at the first segment past the limit, no stack overflow', async () => {
  const template = '/' + Array.from({ length: 5000 }, (_, i) => `s${i}`).join('/');
  const r = await compilePolicy('deep.policy.json', policyText([{ id: 'deep', effect: 'allow', to: [{ paths: [template] }] }]));
  assert.not.ok(r.ok);
  if (r.ok) return;
  assert.is(r.diagnostics.length, 1);
  const [d] = r.diagnostics;
  assert.match(d.message, `more than ${MAX_TEMPLATE_SEGMENTS} segments`);
  assert.ok(d.message.length < 200, 'the message quotes the start of the template, not all 30 KB of it');
  assert.is(d.span.pointer, '/rules/0/to/0/paths/0');
  // The column is that of segment number MAX_TEMPLATE_SEGMENTS + 1 inside the string.
  const line = policyText([{ id: 'deep', effect: 'allow', to: [{ paths: [template] }] }]).split('\n')[d.span.line - 1];
  assert.is(line.slice(d.span.col - 1, d.span.col - 1 + `s${MAX_TEMPLATE_SEGMENTS}/`.length), `s${MAX_TEMPLATE_SEGMENTS}/`);
});

test('a template at the segment limit compiles; requests as deep and deeper get decisions, not a VM trap', async () => {
  const literal = Array.from({ length: MAX_TEMPLATE_SEGMENTS - 1 }, () => 'a');
  const r = compiled(await compilePolicy('at-limit.policy.json', policyText([
    { id: 'deep', effect: 'allow', to: [{ paths: [`/${literal.join('/')}/**`] }] },
    { id: 'shallow', effect: 'allow', to: [{ paths: ['/ok'] }] },
  ])));
  await withFilter(r.wasm, async (f) => {
    const deep = `/${literal.join('/')}`;
    assert.equal(await decide(f, `${deep}/${'a/'.repeat(20_000)}x`), { status: 200, rule: 'deep' });
    assert.equal(await decide(f, `${deep.slice(0, -1)}b/${'a/'.repeat(20_000)}x`), { status: 403, rule: null });
    assert.equal(await decide(f, '/ok'), { status: 200, rule: 'shallow' }, 'the filter still decides after deep requests');
  });
});

test('a literal of hundreds of KB: one located diagnostic (no request within the path limit could match it), no stack overflow', async () => {
  const big = 'k'.repeat(200_000);
  const r = await compilePolicy('big.policy.json', policyText([{ id: 'big', effect: 'allow', to: [{ paths: [`/${big}/{id}`] }] }]));
  assert.not.ok(r.ok);
  if (r.ok) return;
  assert.is(r.diagnostics.length, 1);
  assert.match(r.diagnostics[0].message, `over the ${MAX_PATH_BYTES}-byte limit`);
  assert.ok(r.diagnostics[0].message.length < 400, 'the message quotes the start of the template, not all 200 KB of it');
  assert.is(r.diagnostics[0].span.pointer, '/rules/0/to/0/paths/0');
});

test('a literal of tens of KB compiles and matches exactly', async () => {
  // Under Envoy's default 60 KiB header limit, with room for the fingerprint that binds the path.
  const big = 'k'.repeat(50_000);
  const r = compiled(await compilePolicy('big.policy.json', policyText([{ id: 'big', effect: 'allow', to: [{ paths: [`/${big}/{id}`] }], when: "request.params.id != 'no'" }])));
  await withFilter(r.wasm, async (f) => {
    assert.equal(await decide(f, `/${big}/yes`), { status: 200, rule: 'big' });
    assert.equal(await decide(f, `/${big}/no`), { status: 403, rule: null });
    assert.equal(await decide(f, `/${big.slice(1)}/yes`), { status: 403, rule: null });
    assert.equal(await decide(f, `/${big}/${'y'.repeat(MAX_PATH_BYTES - big.length)}`), { status: 400, rule: null }, 'a path over the limit is path_too_long');
  });
});

test('JSON nested thousands of levels deep: one located diagnostic, no stack overflow', async () => {
  const lines = policyText([{ id: 'x', effect: 'allow' }]).split('\n');
  // A nesting that momoa itself parses, but deeper than the checker's recursion survives.
  const at = lines.findIndex((l) => l.includes('"effect"'));
  lines[at] = lines[at].replace('"allow"', `"allow", "extra": ${'['.repeat(3200)}${']'.repeat(3200)}`);
  const r = await compilePolicy('nested.policy.json', lines.join('\n'));
  assert.not.ok(r.ok);
  if (r.ok) return;
  assert.is(r.diagnostics.length, 1);
  assert.is(r.diagnostics[0].message, `invalid JSON: nested more than ${MAX_JSON_DEPTH} levels deep`);
  assert.is(r.diagnostics[0].span.line, at + 1);
  const col = lines[at].indexOf('[') + 1 + MAX_JSON_DEPTH - 3; // the document, rules and the rule are 3 levels, so the 62nd "[" is the 65th level
  assert.is(r.diagnostics[0].span.col, col);
});

test('hundreds of rules each with its own `when` (the 10,000-rule bench shape): every rule decides on its own', async () => {
  const n = 300;
  const r = compiled(await compilePolicy('whens.policy.json', policyText(Array.from({ length: n }, (_, i) => (
    { id: `p${i}`, effect: 'allow', to: [{ paths: [`/p${i}/{id}`] }], when: `request.params.id != 'x${i}'` }
  )))));
  assert.not.match(r.as, /switch \(/, 'expression functions are reached through the function table');
  await withFilter(r.wasm, async (f) => {
    for (const i of [0, 1, 150, n - 1]) {
      assert.equal(await decide(f, `/p${i}/x${i + 1}`), { status: 200, rule: `p${i}` });
      assert.equal(await decide(f, `/p${i}/x${i}`), { status: 403, rule: null });
    }
  });
});

test('a `when` of the longest accepted length, hundreds of `&&` deep, compiles and short-circuits', async () => {
  const terms = Array.from({ length: 300 }, (_, i) => `request.params.id != 'v${i}'`);
  let when = terms[0];
  for (const t of terms.slice(1)) if (when.length + t.length + 4 <= 4096) when += ` && ${t}`;
  const r = compiled(await compilePolicy('chain.policy.json', policyText([{ id: 'chain', effect: 'allow', to: [{ paths: ['/c/{id}'] }], when }])));
  const last = when.match(/'(v\d+)'$/)![1];
  await withFilter(r.wasm, async (f) => {
    assert.equal(await decide(f, '/c/other'), { status: 200, rule: 'chain' });
    assert.equal(await decide(f, '/c/v0'), { status: 403, rule: null });
    assert.equal(await decide(f, `/c/${last}`), { status: 403, rule: null });
  });
});

test.run();
