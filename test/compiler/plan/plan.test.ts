import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { lower } from '../../../compiler/ir/lower.ts';
import { optimize } from '../../../compiler/optimize/index.ts';
import { plan } from '../../../compiler/plan/index.ts';
import { printPlan, printPlanExpr } from '../../../compiler/plan/print.ts';
import { emit } from '../../../compiler/backend/emit.ts';
import { checked, lowered } from '../backend/helpers.ts';

const WEB = 'spiffe://corp.test/ns/web/sa/frontend';

test('slots: each header, query key and claim path is one slot however many rules read it', () => {
  const p = plan(lowered([
    { id: 'a', effect: 'allow', when: "request.headers['x-t'] == 'a' && user.claims.org.id == 'o' && request.query['q'] == ''" },
    { id: 'b', effect: 'allow', to: [{ paths: ['/c/{id}'] }], when: "request.headers['x-t'] != 'b' && user.claims.org.id != 'p' && request.params.id != ''" },
  ]));
  assert.equal(p.slots, [{ kind: 'header', key: 'x-t' }, { kind: 'claim', path: ['org', 'id'] }, { kind: 'query', key: 'q' }]);
  assert.match(printPlanExpr(p.rules[1].when!, p), /s0:request\.headers\["x-t"\].*s1:user\.claims\["org"\]\["id"\].*request\.params\["id"\]/);
});

test('dispatch: one path trie with positional params and per-atom methods; principals hashed + trie per domain', () => {
  const p = plan(lowered([
    { id: 'a', effect: 'allow', from: [WEB], to: [{ methods: ['GET'], paths: ['/cards/{id}', '/cards/{id}/**'] }] },
    { id: 'b', effect: 'allow', from: ['spiffe://corp.test/ns/*/sa/frontend', 'spiffe://other.test/**'], to: [{ paths: ['/'] }] },
    { id: 'c', effect: 'deny' },
  ], { federatesWith: ['other.test', 'quiet.test'] }));
  const r = p.routes;
  const cards = r.trie.lits.get('cards')!;
  assert.is(cards.any!.exact.length, 1);
  assert.equal(cards.any!.rest, cards.any!.exact); // same rule, methods and params: one shared atom
  assert.equal(r.atoms[cards.any!.exact[0]], { rule: 0, methods: ['GET'], params: [{ name: 'id', pos: 1 }] });
  assert.equal(r.trie.exact.map((a) => r.atoms[a].rule), [1]); // "/" ends at the root
  assert.equal(r.anyPath.map((a) => r.atoms[a]), [{ rule: 2, methods: null, params: [] }]);
  const corp = p.principals.domains.get('corp.test')!;
  assert.equal([...corp.exact], [['/ns/web/sa/frontend', [0]]]);
  assert.equal(corp.trie.lits.get('ns')!.any!.lits.get('sa')!.lits.get('frontend')!.exact, [1]);
  assert.equal(p.principals.domains.get('other.test')!.trie.rest, [1]);
  // A federated trust domain no pattern names still has its (empty) entry: the filter accepts its callers.
  assert.is(p.principals.domains.get('quiet.test')!.exact.size, 0);
});

test('optimize + plan + print + emit: readable plan, deterministic source, warnings beside the program', () => {
  const policy = checked([
    { id: 'read', effect: 'allow', from: [WEB], to: [{ methods: ['GET'], paths: ['/cards/{id}'] }], when: "'read' in user.scopes", inject: { 'x-card': 'request.params.id' } },
    { id: 'never', effect: 'allow', when: '1 > 2' },
  ]);
  const { program, warnings } = optimize(lower(policy));
  assert.is(warnings.length, 1);
  assert.match(warnings[0].message, /rule 'never' can never apply/);
  const p = plan(program);
  const ir = printPlan(p);
  assert.match(ir, /r0 allow "read" \(rules\[0\]/);
  assert.match(ir, /\n {2}\/cards\/\{\} → r0\[GET\]\n/);
  assert.match(ir, /= spiffe:\/\/corp\.test\/ns\/web\/sa\/frontend → r0/);
  const a = emit(p).source;
  assert.is(emit(plan(optimize(lower(policy)).program)).source, a);
  assert.match(a, /\/\/ r0 "read" when: \("read" in user\.scopes\)\nfunction fn0\(\): V \{/);
  assert.match(a, /\/\/ r0 "read" sets x-card = request\.params\["id"\]\nfunction fn1\(\): V \{\n {2}return param\(0\)/);
  assert.match(a, /const FNS: StaticArray<\(\) => V> = \[fn0, fn1\];/, 'function ids index the function table');
});

test('planning does not depend on the optional passes: an unoptimized program plans and emits', () => {
  const p = plan(lowered([
    { id: 'dead', effect: 'allow', when: "1 > 2 && request.headers['x-a'] == 'b'" },
    { id: 'live', effect: 'allow', to: [{ methods: ['GET'], paths: ['/a'] }] },
  ]));
  assert.is(p.rules.length, 2); // nothing removed: that is dce's job, not planning's
  assert.equal(p.slots, [{ kind: 'header', key: 'x-a' }]);
  assert.match(emit(p).source, /\/\/ r0 "dead" when: \(\(1 > 2\) && \(s0:request\.headers\["x-a"\] == "b"\)\)/);
});

test.run();
