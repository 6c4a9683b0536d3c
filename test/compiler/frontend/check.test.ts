import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { TExpr } from '../../../compiler/frontend/ast.ts';
import { errorsOf, messages, policyText, positionOf, run, whenText } from './helpers.ts';

/** The single error message of a policy expected to have exactly one error. */
function onlyError(text: string): string {
  const errors = errorsOf(text);
  assert.is(errors.length, 1, errors.map((e) => e.message).join('\n'));
  return errors[0].message;
}

function whenOf(when: string, to?: unknown): TExpr {
  const r = run(whenText(when, to));
  assert.ok(r.policy, r.diagnostics.map((d) => d.message).join('\n'));
  const t = r.policy.rules[0].when;
  assert.ok(t);
  return t;
}

test("the issue's example (with params on every template) checks into the documented shape", () => {
  const text = policyText([{
    id: 'list-cards', effect: 'allow',
    from: ['spiffe://bank.example/ns/web/sa/frontend', 'spiffe://bank.example/ns/ops/*', 'spiffe://bank.example/ns/batch/**'],
    to: [{ methods: ['GET'], paths: ['/cards/{id}', '/users/{uid}/cards/{id}/**'] }],
    when: "'list_cards' in user.scopes && user.claims.acr == 'mfa'",
    inject: { 'X-User-Id': 'user.sub', 'x-card': 'request.params.id' },
  }], { mode: 'dry-run' });
  const { policy, diagnostics } = run(text);
  assert.equal(diagnostics, []);
  assert.ok(policy);
  assert.is(policy.mode, 'dry-run');
  assert.match(policy.source.sha256, /^[0-9a-f]{64}$/);
  const [rule] = policy.rules;
  assert.equal(rule.from?.map((p) => [p.trustDomain, p.segments, p.rest]), [
    ['bank.example', ['ns', 'web', 'sa', 'frontend'], false],
    ['bank.example', ['ns', 'ops', '*'], false],
    ['bank.example', ['ns', 'batch'], true],
  ]);
  assert.equal(rule.to?.[0].paths?.[1].segments, [
    { kind: 'literal', value: 'users' }, { kind: 'param', name: 'uid' }, { kind: 'literal', value: 'cards' }, { kind: 'param', name: 'id' },
  ]);
  assert.is(rule.to?.[0].paths?.[1].rest, true);
  assert.equal(rule.inject.map((i) => [i.header, i.value.k, i.value.t]), [['x-user-id', 'attr', 'string'], ['x-card', 'lookup', 'string']]);
  assert.is(rule.when?.k, 'and');
  assert.equal(rule.span, { file: 'p.policy.json', line: 6, col: 5, pointer: '/rules/0' });
});

test('defaults: mode enforce, from/to/when null, inject empty', () => {
  const { policy } = run(policyText([{ id: 'all', effect: 'deny' }]));
  assert.ok(policy);
  assert.is(policy.mode, 'enforce');
  assert.equal([policy.rules[0].from, policy.rules[0].to, policy.rules[0].when, policy.rules[0].inject], [null, null, null, []]);
});

test('attributes resolve to typed nodes; header keys are lowercased', () => {
  const cmp = whenOf("request.headers['X-Trace'] == 'a'");
  assert.ok(cmp.k === 'cmp' && cmp.l.k === 'lookup' && cmp.l.key === 'x-trace' && cmp.l.map === 'headers');
  const claim = whenOf("user.claims.address['country'] == 'NL'");
  assert.ok(claim.k === 'cmp' && claim.l.k === 'claim');
  assert.equal(claim.k === 'cmp' && claim.l.k === 'claim' && claim.l.path, ['address', 'country']);
  const presence = whenOf("'X-A' in request.headers && 'page' in request.query && size(request.params) == 1");
  assert.ok(presence.k === 'and' && presence.l.k === 'and' && presence.l.l.k === 'in' && presence.l.l.elem.k === 'str');
  assert.is(presence.k === 'and' && presence.l.k === 'and' && presence.l.l.k === 'in' && presence.l.l.elem.k === 'str' && presence.l.l.elem.v, 'x-a');
  // Comparisons, membership and calls are bool even on dyn operands (checked at run time)...
  assert.is(whenOf('user.claims.level > 2 && request.method.startsWith(source.principal) && user.sub in user.claims.admins').t, 'bool');
  // ...but a dyn operand of && makes the result dyn.
  assert.is(whenOf('user.claims.enabled && true').t, 'dyn');
  assert.is(whenOf("request.method == 'GET'").t, 'bool');
});

test('expression spans point into the policy file, through JSON escapes', () => {
  const text = whenText('user.claims.x == "\\u00e9" && request.methd == 1');
  const [error] = errorsOf(text);
  const at = positionOf(text, 'request.methd', 'request.'.length);
  assert.equal([error.span.line, error.span.col, error.span.pointer], [at.line, at.col, '/rules/0/when']);
  assert.is(error.message, "unknown attribute 'request.methd'; did you mean 'request.method'?");
});

test('syntax errors are reported at line:col inside the file', () => {
  const text = whenText("(request.method == 'GET'");
  const [line] = messages(text);
  const { line: l, col } = positionOf(text, "'GET'", 5);
  assert.is(line, `p.policy.json:${l}:${col}: error: syntax error: expected ')' but found end of expression (at /rules/0/when)`);
});

test('type errors', () => {
  const cases: [string, RegExp][] = [
    ['request.method > 5', /'>' cannot compare string with number/],
    ['request.method', /'when' must be a bool expression, not string/],
    ['user.scopes == 1', /cannot compare list<string> values/],
    ['true < false', /cannot compare bool values \(only numbers and strings are ordered\)/],
    ['1 in user.scopes', /'in' cannot look for a number in a list<string>/],
    ["'a' in request.method", /'in' needs a list or map on the right, not string/],
    ['!request.path', /'!' needs a bool, not string/],
    ["request.path && true", /'&&' needs bool operands, not string/],
    ['size(1) == 1', /size\(\) takes a string, list or map, not number/],
    ["request.path.startsWith(1)", /startsWith\(\) takes a string argument, not number/],
    ["user.scopes.contains('a')", /contains\(\) applies to strings, not list<string>/],
    ["request.path.endsWith('a', 'b')", /takes exactly 1 argument, got 2/],
    ["[1, 'a'] == []", /list items must be all strings or all numbers/],
    ['request.method.x == 1', /a string has no field or key 'x'/],
    ['1e999 == 1', /number out of range/],
  ];
  for (const [when, message] of cases) assert.match(onlyError(whenText(when)), message, when);
});

test('names: unknown attributes, roots, functions and methods, with suggestions', () => {
  const cases: [string, RegExp][] = [
    ["requst.method == 'GET'", /unknown attribute 'requst.method'; did you mean 'request.method'\?/],
    ["user.scope == 'x'", /unknown attribute 'user.scope'; did you mean 'user.scopes'\?/],
    ["request == 'x'", /'request' is not a value; use one of request.method, /],
    ['foo', /unknown name 'foo'/],
    ['tru', /unknown name 'tru'; did you mean 'true'\?/],
    ['len(user.scopes) > 0', /unknown function 'len'/],
    ["startsWith(request.path, '/a')", /unknown function 'startsWith'; it is a method: s.startsWith\(x\)/],
    ['user.scopes.size() > 0', /unknown method 'size'; use size\(x\)/],
    ["request.path.startswith('/a')", /unknown method 'startswith'; did you mean 'startsWith'\?/],
    ["request['method'] == 'GET'", /use 'request.method' instead of indexing 'request'/],
    ['request.headers[request.path] == 1', /an index must be a constant string/],
    ["user.claims.groups[0] == 'a'", /an index must be a constant string/],
    ["request.headers[':path'] == '/'", /pseudo-header ':path' cannot be read/],
    ["request.headers['a b'] == ''", /"a b" is not a valid header name/],
  ];
  for (const [when, message] of cases) assert.match(onlyError(whenText(when)), message, when);
});

test('request.params must be defined by every path template of the rule', () => {
  const to = [{ paths: ['/cards/{id}', '/cards/{id}/tx/{tx}'] }];
  assert.ok(run(whenText("request.params.id != ''", to)).policy);
  assert.match(onlyError(whenText("request.params.tx != ''", to)), /'tx' is not a parameter of path template '\/cards\/\{id\}'/);
  assert.match(onlyError(whenText("request.params['id'] != ''", [{ methods: ['GET'] }])), /needs path templates: an entry of the rule's 'to' has no 'paths'/);
  assert.match(onlyError(policyText([{ id: 'r', effect: 'allow', inject: { 'x-id': 'request.params.id' } }])), /needs path templates: the rule has no 'to'/);
  // The map as a whole needs no template.
  assert.ok(run(policyText([{ id: 'r', effect: 'allow', when: "size(request.params) == 0 && !('id' in request.params)" }])).policy);
});

test("inject may name a parameter some templates lack (the issue's /cards + /cards/{id} example): a warning, '' there", () => {
  const rule = { id: 'list-cards', effect: 'allow', to: [{ methods: ['GET'], paths: ['/cards', '/cards/{id}'] }] };
  const { policy, diagnostics } = run(policyText([{ ...rule, inject: { 'x-card': 'request.params.id' } }]));
  assert.ok(policy, diagnostics.map((d) => d.message).join('\n'));
  assert.equal(diagnostics.map((d) => [d.severity, d.span.pointer]), [['warning', '/rules/0/inject/x-card']]);
  assert.match(diagnostics[0].message, /request\.params\.id is '' for requests matching it/);
  // A parameter no template defines is still a typo, and `when` stays strict.
  assert.match(onlyError(policyText([{ ...rule, inject: { 'x-card': 'request.params.cid' } }])), /'cid' is not a parameter/);
  assert.match(onlyError(policyText([{ ...rule, when: "request.params.id != ''" }])), /must be defined by every path template/);
});

test('SPIFFE IDs and patterns', () => {
  const cases: [string, RegExp][] = [
    ['SPIFFE://bank.example/a', /scheme must be lowercase/],
    ['spiffe://Bank.example/a', /trust domain must be lowercase \('bank.example'\)/],
    ['spiffe://bank.example:8443/a', /must not contain a port/],
    ['spiffe://u@bank.example/a', /must not contain user info/],
    ['spiffe://bank.example/a?b', /must not contain a query/],
    ['spiffe://bank.example/a#b', /must not contain a fragment/],
    ['spiffe://bank.example/a%2Fb', /must not contain percent-encoding/],
    ['spiffe:///a', /missing trust domain/],
    ['spiffe://bank!/a', /invalid character '!' in trust domain/],
    ['spiffe://bank.example', /a caller pattern needs a path; use 'spiffe:\/\/bank.example\/\*\*'/],
    ['spiffe://bank.example/a//b', /empty path segment/],
    ['spiffe://bank.example/a/', /empty path segment/],
    ['spiffe://bank.example/a/../b', /'\.\.' is not allowed/],
    ['spiffe://bank.example/a/./b', /'\.' is not allowed/],
    ['spiffe://bank.example/a b', /invalid character " " in path segment/],
    ['spiffe://bank.example/**/a', /'\*\*' is only allowed as the last segment/],
    ['spiffe://bank.example/sa-*', /a wildcard must be a whole segment/],
    [`spiffe://bank.example/${'a'.repeat(2100)}`, /at most 2048 bytes/],
  ];
  for (const [pattern, message] of cases) {
    assert.match(onlyError(policyText([{ id: 'r', effect: 'allow', from: [pattern] }])), message, pattern);
  }
  assert.match(onlyError(policyText([], { service: 'spiffe://bank.example/ns/*' })), /the service must be a concrete SPIFFE ID/);
  assert.match(onlyError(policyText([], { service: 'spiffe://bank.example/ns/**' })), /the service must be a concrete SPIFFE ID/);
  assert.match(onlyError(policyText([], { service: 'spiffe://bank.example' })), /needs a path/);
  // The column points at the offending part of the string.
  const text = policyText([{ id: 'r', effect: 'allow', from: ['spiffe://bank.example/a//b'] }]);
  assert.is(errorsOf(text)[0].span.col, positionOf(text, '"spiffe://bank.example/a//b"').col + 1 + 'spiffe://bank.example/a/'.length);
});

test('trust domains: `from` names only accepted ones, `federatesWith` lists valid other ones', () => {
  // A pattern of a trust domain the filter refuses before any rule could never match.
  const foreign = policyText([{ id: 'r', effect: 'allow', from: ['spiffe://partner.example/ns/**'] }]);
  assert.match(onlyError(foreign), /trust domain 'partner\.example' is not accepted by this policy: .*add it to 'federatesWith'/);
  assert.is(errorsOf(foreign)[0].span.col, positionOf(foreign, '"spiffe://partner.example').col + 1 + 'spiffe://'.length);
  const federated = run(policyText([{ id: 'r', effect: 'allow', from: ['spiffe://partner.example/ns/**'] }], { federatesWith: ['partner.example'] }));
  assert.equal(federated.diagnostics, []);
  assert.equal(federated.policy!.federatesWith, ['partner.example']);
  const cases: [unknown[], RegExp][] = [
    [['Partner.example'], /invalid trust domain 'Partner\.example': the trust domain must be lowercase/],
    [['partner.example', 'partner.example'], /listed twice/],
    [['bank.example'], /is the service's own trust domain/],
    [[], /must not be empty/],
  ];
  for (const [list, message] of cases) assert.match(onlyError(policyText([], { federatesWith: list })), message, JSON.stringify(list));
});

test('path templates and methods', () => {
  const cases: [string, RegExp][] = [
    ['cards', /starts with '\/'/],
    ['/cards/', /empty path segment/],
    ['//cards', /empty path segment/],
    ['/a/../admin', /'\.\.' segments are removed by path normalization/],
    ['/a/%2F', /percent-encoding is not allowed/],
    ['/a?b=1', /the query never takes part in path matching/],
    ['/a#x', /a fragment is not part of a request path/],
    ['/a\\b', /backslash/],
    ['/a/**/b', /'\*\*' is only allowed as the last segment/],
    ['/a/*', /use '\{name\}' for one segment/],
    ['/a/{id}/{id}', /duplicate parameter '\{id\}'/],
    ['/a/{1d}', /a parameter name is a letter/],
    ['/a/x{id}', /must be a whole segment/],
    ['/café', /invalid character "é"/],
  ];
  for (const [path, message] of cases) {
    assert.match(onlyError(policyText([{ id: 'r', effect: 'allow', to: [{ paths: [path] }] }])), message, path);
  }
  const ok = run(policyText([{ id: 'r', effect: 'allow', to: [{ methods: ['GET', 'M-SEARCH'], paths: ['/', '/**', "/a:b/@c/~d/{x_1}/**"] }] }]));
  assert.ok(ok.policy, ok.diagnostics.map((d) => d.message).join('\n'));
  assert.equal(ok.policy.rules[0].to?.[0].paths?.map((p) => [p.segments.length, p.rest]), [[0, false], [0, true], [4, true]]);
  assert.match(onlyError(policyText([{ id: 'r', effect: 'allow', to: [{ methods: ['get'] }] }])), /case-sensitive and uppercase: did you mean 'GET'\?/);
  assert.match(onlyError(policyText([{ id: 'r', effect: 'allow', to: [{ methods: ['GE T'] }] }])), /not an HTTP method token/);
});

test('rule ids and injected headers', () => {
  assert.match(onlyError(policyText([{ id: 'a', effect: 'allow' }, { id: 'a', effect: 'deny' }])), /duplicate rule id 'a' \(first used by rule 0, line 6\)/);
  const cases: [string, string, RegExp][] = [
    [':path', "'/x'", /cannot inject pseudo-header ':path'/],
    ['connection', "'x'", /hop-by-hop header 'connection'/],
    ['Transfer-Encoding', "'x'", /hop-by-hop header 'transfer-encoding'/],
    ['host', "'x'", /controls routing or framing/],
    ['content-length', "'1'", /controls routing or framing/],
    ['X-Palisade-Rule', "'x'", /reserved for Palisade/],
    ['x y', "'x'", /not a valid header name/],
    ['x-n', 'size(user.scopes)', /injected header 'x-n' needs a string expression, not number/],
    ['x-b', "request.method == 'GET'", /needs a string expression, not bool/],
    ['x-c', "'a\\r\\nx-admin: 1'", /cannot contain CR, LF or NUL/],
    ['x-d', "'a\\u0001b'", /nor any other control character \(found "\\u0001"/],
    ['x-e', "'a\\u007fb'", /nor any other control character/],
  ];
  for (const [header, value, message] of cases) {
    assert.match(onlyError(policyText([{ id: 'r', effect: 'allow', inject: { [header]: value } }])), message, header);
  }
  assert.match(onlyError(policyText([{ id: 'r', effect: 'allow', inject: { 'X-A': "'1'", 'x-a': "'2'" } }])), /injected twice/);
  // A dyn claim is accepted (checked at run time).
  assert.ok(run(policyText([{ id: 'r', effect: 'allow', inject: { 'x-tenant': 'user.claims.tenant' } }])).policy);
});

test('every error is reported, sorted by position, each with its pointer', () => {
  const text = policyText([
    { id: 'a', effect: 'allow', from: ['spiffe://x/a/../b'], when: 'request.methd == 1' },
    { id: 'a', effect: 'deny', to: [{ paths: ['/x/'] }], inject: { host: "'h'" } },
  ], { name: 'Bad' });
  const errors = errorsOf(text);
  assert.equal(errors.map((e) => e.span.pointer), ['/name', '/rules/0/from/0', '/rules/0/when', '/rules/1/id', '/rules/1/to/0/paths/0', '/rules/1/inject/host']);
  const positions = errors.map((e) => e.span.line * 1000 + e.span.col);
  assert.equal(positions, [...positions].sort((a, b) => a - b));
  assert.is(run(text).policy, null);
});

test('a constant false `when` is a warning and the policy still compiles', () => {
  const r = run(policyText([{ id: 'off', effect: 'allow', when: 'false' }]));
  assert.ok(r.policy);
  assert.equal(r.diagnostics.map((d) => [d.severity, d.message]), [['warning', "rule 'off' never applies: its 'when' is false"]]);
});

test('inject on a deny rule is a warning: it can never take effect', () => {
  const r = run(policyText([{ id: 'd', effect: 'deny', inject: { 'x-a': "'1'" } }]));
  assert.ok(r.policy);
  assert.equal(r.diagnostics.map((d) => [d.severity, d.message, d.span.pointer]), [['warning', "'inject' has no effect on a deny rule", '/rules/0/inject']]);
});

test.run();
