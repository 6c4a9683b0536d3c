import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fold } from '../../../compiler/optimize/fold.ts';
import { contradictions } from '../../../compiler/optimize/contradict.ts';
import { shadow, segsCover } from '../../../compiler/optimize/shadow.ts';
import { dce } from '../../../compiler/optimize/dce.ts';
import { printExpr, type Program } from '../../../compiler/ir/ir.ts';
import type { Diagnostic } from '../../../compiler/frontend/ast.ts';
import { lowered } from '../backend/helpers.ts';

const WEB = 'spiffe://corp.test/ns/web/sa/frontend';
const when = (p: Program, i = 0) => (p.rules[i].when ? printExpr(p.rules[i].when!) : null);

test('lower: one route per request match × path template; strip = every injectable name, sorted', () => {
  const p = lowered([
    { id: 'a', effect: 'allow', to: [{ methods: ['GET', 'HEAD'], paths: ['/a', '/b/{id}'] }, { methods: ['POST'] }], inject: { 'x-z': "'1'" } },
    { id: 'b', effect: 'allow', inject: { 'x-a': "'2'" } },
  ]);
  assert.equal(p.rules[0].routes!.map((r) => `${r.methods?.join(',')} ${r.path?.text ?? '*'}`), ['GET,HEAD /a', 'GET,HEAD /b/{id}', 'POST *']);
  assert.is(p.rules[1].routes, null);
  assert.equal(p.strip, ['x-a', 'x-z']);
});

test('fold: constants fold, errors are preserved, dyn operands stay', () => {
  const p = fold(lowered([
    { id: 'a', effect: 'allow', when: "1 < 2 && request.headers['x-a'] == 'v'" },
    { id: 'b', effect: 'allow', when: "request.headers['x-a'] == 'v' && true" },
    { id: 'c', effect: 'allow', when: 'true && user.claims.admin' },
    { id: 'd', effect: 'allow', when: "size('héllo') == 6 && 'b' in ['a', 'b']" },
    { id: 'e', effect: 'allow', when: "user.sub == 'x' && false" },
  ]));
  assert.is(when(p, 0), '(request.headers["x-a"] == "v")');
  assert.is(when(p, 1), '(request.headers["x-a"] == "v")');
  assert.is(when(p, 2), '(true && user.claims["admin"])'); // the run-time bool check of a dyn stays
  assert.is(p.rules[3].when, null);
  assert.is(p.rules[3].never, undefined);
  assert.is(when(p, 4), '((user.sub == "x") && false)'); // an error in user.sub must stay an error
});

test('fold: a `when` that is always false, or contradicts the methods, marks the rule', () => {
  const p = fold(lowered([
    { id: 'f', effect: 'allow', when: "'a' == 'b'" },
    { id: 'm', effect: 'allow', to: [{ methods: ['GET'] }], when: "request.method == 'POST'" },
    { id: 'k', effect: 'deny', to: [{ methods: ['GET'] }], when: "request.method == 'GET'" },
    { id: 'n', effect: 'allow', to: [{ methods: ['GET', 'PUT'] }], when: "request.method in ['POST', 'DELETE']" },
  ]));
  assert.match(p.rules[0].never!, /always false/);
  assert.match(p.rules[1].never!, /always false/);
  assert.is(p.rules[2].when, null); // GET-only routes: the check is redundant
  assert.is(p.rules[2].never, undefined);
  assert.ok(p.rules[3].never);
});

test('contradictions: empty caller or method lists never apply; partly empty routes are pruned', () => {
  const p = lowered([{ id: 'a', effect: 'allow' }, { id: 'b', effect: 'allow', to: [{ methods: ['GET'] }, { methods: ['PUT'] }] }]);
  p.rules[0].from = [];
  p.rules[1].routes![0].methods = [];
  const q = contradictions(p);
  assert.match(q.rules[0].never!, /`from` matches no caller/);
  assert.equal(q.rules[1].routes!.map((r) => r.methods), [['PUT']]);
  p.rules[1].routes![1].methods = [];
  assert.match(contradictions(p).rules[1].never!, /`to` matches no request/);
});

test('segsCover: wildcards, rest and lengths', () => {
  const s = (segs: (string | null)[], rest = false) => ({ segs, rest });
  assert.ok(segsCover(s(['a'], true), s(['a', 'b'])));
  assert.ok(segsCover(s(['a'], true), s(['a', null], true)));
  assert.not.ok(segsCover(s(['a'], true), s(['a']))); // ** needs one more segment
  assert.ok(segsCover(s([null, 'b']), s(['x', 'b'])));
  assert.not.ok(segsCover(s(['x', 'b']), s([null, 'b'])));
  assert.not.ok(segsCover(s(['a']), s(['a'], true)));
});

test('shadow: an unconditional deny covering an allow marks it; conditions or narrower denies do not', () => {
  const p = shadow(lowered([
    { id: 'wall', effect: 'deny', from: ['spiffe://corp.test/ns/web/**'], to: [{ paths: ['/admin/**'] }] },
    { id: 'hidden', effect: 'allow', from: [WEB], to: [{ methods: ['GET'], paths: ['/admin/users', '/admin/{x}/y'] }] },
    { id: 'root', effect: 'allow', from: [WEB], to: [{ paths: ['/admin'] }] },
    { id: 'anyone', effect: 'allow', to: [{ paths: ['/admin/users'] }] },
    { id: 'cond', effect: 'deny', to: [{ paths: ['/x'] }], when: "request.headers['a'] == 'b'" },
    { id: 'behind-cond', effect: 'allow', from: [WEB], to: [{ paths: ['/x'] }] },
  ]));
  assert.match(p.rules[1].never!, /shadowed by deny rule 'wall' \(rules\[0\]\)/);
  assert.is(p.rules[2].never, undefined); // /admin is not under /admin/**
  assert.is(p.rules[3].never, undefined); // callers outside ns/web are not covered
  assert.is(p.rules[5].never, undefined);
});

test('shadow: a deny without `from` covers callers of the own trust domain only, never federated ones', () => {
  const p = shadow(lowered([
    { id: 'wall', effect: 'deny', to: [{ paths: ['/admin/**'] }] },
    { id: 'local', effect: 'allow', from: [WEB], to: [{ paths: ['/admin/users'] }] },
    { id: 'partner', effect: 'allow', from: ['spiffe://partner.test/ns/**'], to: [{ paths: ['/admin/users'] }] },
  ], { federatesWith: ['partner.test'] }));
  assert.match(p.rules[1].never!, /shadowed by deny rule 'wall'/);
  assert.is(p.rules[2].never, undefined);
});

test('dce: removes never-applying rules with one warning each at the rule, reported beside the IR', () => {
  const warnings: Diagnostic[] = [];
  const p = dce(fold(lowered([{ id: 'keep', effect: 'allow' }, { id: 'dead', effect: 'allow', when: 'false' }])), (d) => warnings.push(d));
  assert.equal(p.rules.map((r) => r.id), ['keep']);
  assert.is(warnings.length, 1);
  assert.is(warnings[0].severity, 'warning');
  assert.match(warnings[0].message, /rule 'dead' can never apply: its `when` is always false/);
  assert.is(warnings[0].span.pointer, '/rules/1');
  assert.not.ok('warnings' in p, 'diagnostics are not part of the IR');
});

test.run();
