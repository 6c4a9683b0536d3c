/**
 * The policy loop around compile: --version, check, eval, and test's
 * reports, selection, coverage, per-case plugin configuration and compiled-filter cache,
 * each through a real `palisade` process on real files, filters compiled for real.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { palisade as run } from '../support/cli.ts';
import { cacheKey } from '../../testing/filter-cache.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'palisade-tooling-'));
const cache = path.join(dir, 'cache');
test.after(() => rmSync(dir, { recursive: true, force: true }));

const palisade = (...args: string[]) => run(args, { cwd: dir, env: { PALISADE_CACHE_DIR: cache } });
const write = (name: string, value: unknown) => writeFileSync(path.join(dir, name), typeof value === 'string' ? value : JSON.stringify(value, null, 2));

const frontend = 'spiffe://bank.example/ns/web/sa/frontend';
const policy = {
  palisade: 1,
  name: 'tooling',
  service: 'spiffe://bank.example/ns/payments/sa/card-service',
  rules: [
    { id: 'read', effect: 'allow', from: [frontend], to: [{ methods: ['GET'], paths: ['/cards/{id}'] }, { methods: ['HEAD'], paths: ['/cards'] }],
      when: "request.headers['x-tenant'] == 'acme'", inject: { 'x-card': 'request.params.id' } },
    { id: 'no-admin', effect: 'deny', to: [{ paths: ['/admin/**'] }] },
  ],
};
const read = { method: 'GET', path: '/cards/7', source: frontend, headers: { 'x-tenant': 'acme' } };
const cases = {
  policy: 'p.policy.json',
  cases: [
    { name: 'frontend reads a card', request: read, expect: { decision: 'allow', status: 200, rule: 'read', upstreamHeaders: { 'x-card': '7' } } },
    { name: 'admin is closed', request: { method: 'GET', path: '/admin/x', source: frontend }, expect: { decision: 'deny', status: 403, rule: 'no-admin', reason: 'deny_rule' } },
    { name: 'dry-run forwards a denied request', config: { mode: 'dry-run' }, request: { method: 'GET', path: '/admin/x', source: frontend },
      expect: { decision: 'deny', status: 200, rule: 'no-admin' } },
  ],
};
write('p.policy.json', policy);
write('p.cases.json', cases);

test('--version and -V name the compiler, the proxy-wasm ABI and the AssemblyScript version', async () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
  const asc = JSON.parse(readFileSync('node_modules/assemblyscript/package.json', 'utf8'));
  for (const r of await Promise.all(['--version', '-V'].map((flag) => palisade(flag)))) {
    assert.is(r.code, 0, r.stderr);
    assert.is(r.stdout, `palisade ${pkg.version} (proxy-wasm ABI 0.2.1, AssemblyScript ${asc.version})\n`);
  }
});

test('check: compile\'s diagnostics and warnings, exit 2 on any error after every file, no wasm built', async () => {
  write('bad.policy.json', { ...policy, rules: [{ id: 'a', effect: 'allow', when: 'request.method > 5' }] });
  write('never.policy.json', { ...policy, rules: [...policy.rules, { id: 'never', effect: 'allow', when: "'a' == 'b'" }] });
  const [r, ok] = await Promise.all([palisade('check', 'bad.policy.json', 'never.policy.json', 'missing.json'), palisade('check', 'p.policy.json')]);
  assert.is(r.code, 2);
  assert.match(r.stderr, /^bad\.policy\.json:\d+:\d+: error: .+ \(at \/rules\/0\/when\)$/m);
  assert.match(r.stderr, /^never\.policy\.json:\d+:\d+: warning: rule 'never' can never apply: its `when` is always false/m);
  assert.match(r.stderr, /^missing\.json: error: cannot read policy: ENOENT$/m);
  assert.match(r.stdout, /^never\.policy\.json: ok \(2\/3 rules live\)$/m);
  assert.not.match(r.stderr, /\n\s+at /);
  assert.is(ok.code, 0, ok.stderr);
  assert.is(ok.stdout, 'p.policy.json: ok (2/2 rules live)\n');
  assert.equal(readdirSync(dir).filter((f) => f.endsWith('.wasm')), []);
});

test('test: -v prints every case with its decision; --run selects by name; a --run that selects nothing is an error', async () => {
  const v = await palisade('test', '-v', 'p.cases.json');
  assert.is(v.code, 0, v.stdout + v.stderr);
  // The file's first run that needs the filter: it compiled p.policy.json into the cache, under its key.
  assert.equal(readdirSync(cache), [`${cacheKey(readFileSync(path.join(dir, 'p.policy.json'), 'utf8'))}.wasm`]);
  assert.match(v.stdout, /^PASS p\.cases\.json:\d+:\d+ "frontend reads a card": allow 200 \(rule "read", reason allow_rule, mode enforce\)$/m);
  assert.match(v.stdout, /^PASS .*"dry-run forwards a denied request": deny 200 \(rule "no-admin", reason deny_rule, mode dry-run\)$/m);
  assert.ok(v.stdout.endsWith('3 passed, 0 failed\n'));
  const [only, none, bad] = await Promise.all(['^admin', 'nothing-like-this', '('].map((run) => palisade('test', '--run', run, 'p.cases.json')));
  assert.is(only.stdout, '1 passed, 0 failed\n');
  assert.is(none.code, 2);
  assert.match(none.stderr, /selects no case/);
  assert.is(bad.code, 2);
});

test('test: --format json and junit carry every case, with failures', async () => {
  write('f.cases.json', { ...cases, cases: [...cases.cases, { name: 'wrong <&> "expectation"', request: read, expect: { decision: 'deny' } }] });
  const [json, junit, tap] = await Promise.all(['json', 'junit', 'tap'].map((format) => palisade('test', '--format', format, 'f.cases.json')));
  assert.is(json.code, 1);
  const report = JSON.parse(json.stdout);
  assert.is(report.passed, 3);
  assert.is(report.failed, 1);
  const wrong = report.files[0].cases[3];
  assert.equal([wrong.passed, wrong.decision, wrong.status, wrong.rule, wrong.reason], [false, 'allow', 200, 'read', 'allow_rule']);
  assert.equal(wrong.failures, ['decision: expected "deny", got "allow"']);
  assert.is(junit.code, 1);
  assert.match(junit.stdout, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites name="palisade test" tests="4" failures="1">/);
  assert.match(junit.stdout, '<testsuite name="f.cases.json" tests="4" failures="1">');
  assert.match(junit.stdout, '<testcase name="wrong &lt;&amp;&gt; &quot;expectation&quot;" classname="f.cases.json"');
  assert.match(junit.stdout, '<failure message="decision: expected &quot;deny&quot;, got &quot;allow&quot;">');
  assert.is((junit.stdout.match(/<testcase /g) ?? []).length, 4);
  assert.is(tap.code, 2);
});

test('test --coverage: rules, `to` entries and `when` branches no case exercised, text and JSON', async () => {
  write('more.cases.json', { ...cases, cases: [
    { name: 'head', request: { ...read, method: 'HEAD', path: '/cards' }, expect: { decision: 'allow' } },
    { name: 'other tenant', request: { ...read, headers: { 'x-tenant': 'x' } }, expect: { decision: 'deny' } },
  ] });
  const [r, both] = await Promise.all([palisade('test', '--coverage', 'p.cases.json'), palisade('test', '--coverage', '--format', 'json', 'p.cases.json', 'more.cases.json')]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /coverage p\.policy\.json: 2\/2 rules decided a case, 2\/3 `to` entries matched, 1\/2 `when` branches taken/);
  assert.match(r.stdout, /p\.policy\.json:\d+:\d+: a `to` entry of rule 'read' matched no case/);
  assert.match(r.stdout, /p\.policy\.json:\d+:\d+: the `when` of rule 'read' was never false/);
  assert.is(both.code, 0, both.stdout + both.stderr);
  const [cov] = JSON.parse(both.stdout).coverage;
  assert.equal(cov.uncovered, []);
  assert.equal(cov.rules[0].when, { at: cov.rules[0].when.at, true: 2, false: 1, error: 0 });
});

test('case files: every problem at once, an empty case list refused, a per-case plugin configuration the filter refuses fails that case', async () => {
  write('bad.cases.json', { policy: 'p.policy.json', cases: [
    { name: 'a', request: { method: 'GET', path: 'x' }, expect: { decision: 'permit' } },
    { name: 'b', request: { method: 'GET', path: '/', source: 'spiffe://bank.example/../x' }, expect: { decision: 'deny', reason: 'no_alow_rule' } },
  ] });
  write('empty.cases.json', { policy: 'p.policy.json', cases: [] });
  write('cfg.cases.json', { policy: 'p.policy.json', cases: [{ name: 'bad config', config: { mode: 'permissive' }, request: read, expect: { decision: 'allow' } }] });
  const [r, cfg] = await Promise.all([palisade('test', 'bad.cases.json', 'empty.cases.json'), palisade('test', 'cfg.cases.json')]);
  assert.is(r.code, 2);
  assert.is(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.is(lines.length, 5, r.stderr);
  assert.match(lines[0], /^bad\.cases\.json:\d+:\d+: "path" must be a string starting with "\/"/);
  assert.match(r.stderr, /"decision" must be one of allow, deny, unauthenticated/);
  assert.match(r.stderr, /"source" must be a workload SPIFFE ID/);
  assert.match(r.stderr, /"reason" must be a decision reason; did you mean 'no_allow_rule'\?/);
  assert.match(r.stderr, /^empty\.cases\.json:\d+:\d+: "cases" is empty: a case file must test something \(at \/cases\)$/m);
  assert.is(cfg.code, 1);
  assert.match(cfg.stdout, /FAIL .*"bad config"\n  config: the filter refuses this plugin configuration/);
});

test('test: a case file may name its schema ($schema)', async () => {
  write('s.cases.json', { $schema: '../schema/cases.schema.json', ...cases });
  assert.is((await palisade('test', 's.cases.json')).code, 0);
});

test('eval: decision, status, rule, reason, mode and injected headers of one request, human and JSON', async () => {
  write('req.json', { method: 'GET', path: '/cards/7', source: frontend, headers: { 'x-tenant': 'other' } });
  const [json, human, dry, unbound] = await Promise.all([
    palisade('eval', '--policy', 'p.policy.json', '--format', 'json', '--request', JSON.stringify({ ...read, headers: { ...read.headers, 'x-card': 'spoofed' } })),
    palisade('eval', '--policy', 'p.policy.json', '--request-file', 'req.json'),
    palisade('eval', '--policy', 'p.policy.json', '--config', '{"mode":"dry-run"}', '--format', 'json', '--request-file', 'req.json'),
    // The fingerprint is part of the decision: a claim that does not bind the request is refused as in `palisade test`.
    palisade('eval', '--policy', 'p.policy.json', '--format', 'json', '--request', JSON.stringify({ ...read, fingerprint: { htm: 'POST' } })),
  ]);
  assert.is(json.code, 0, json.stderr);
  assert.equal(JSON.parse(json.stdout), { decision: 'allow', status: 200, rule: 'read', mode: 'enforce', reason: 'allow_rule', upstreamHeaders: { 'x-card': '7' } });
  assert.is(human.code, 0, human.stderr);
  assert.match(human.stdout, /^decision  deny\nstatus    403\nrule      \(none\)\nreason    no_allow_rule /);
  assert.equal(JSON.parse(dry.stdout), { decision: 'deny', status: 200, rule: null, mode: 'dry-run', reason: 'no_allow_rule', upstreamHeaders: {} });
  assert.equal(JSON.parse(unbound.stdout), { decision: 'unauthenticated', status: 401, rule: null, mode: 'enforce', reason: 'fingerprint_htm', upstreamHeaders: null });
});

test('eval: bad input is every problem with its position, exit 2, no stack trace', async () => {
  const badArgs = [[], ['--request', '{}', '--request-file', 'req.json'], ['--request', '{"method":"GET","path":"/"}', '--config', '[1]'], ['--request', '{"method":"GET","path":"/"}', '--format', 'yaml']];
  const [r, refused, ...bads] = await Promise.all([
    palisade('eval', '--policy', 'p.policy.json', '--request', '{"method":"GET","path":"cards","sorce":"x"}'),
    palisade('eval', '--policy', 'p.policy.json', '--request', '{"method":"GET","path":"/"}', '--config', '{"mode":"permissive"}'),
    ...badArgs.map((args) => palisade('eval', '--policy', 'p.policy.json', ...args)),
  ]);
  assert.is(r.code, 2);
  assert.match(r.stderr, /--request:1:\d+: "path" must be a string starting with "\/" \(at \/path\)\n--request:1:\d+: unknown field "sorce"/);
  bads.forEach((bad, i) => {
    assert.is(bad.code, 2, badArgs[i].join(' '));
    assert.not.match(bad.stderr, /\n\s+at /);
  });
  assert.is(refused.code, 2);
  assert.match(refused.stderr, /the filter refuses this plugin configuration/);
});

test('filter cache: an unchanged policy is not rebuilt, a changed one is, --no-cache bypasses it', async () => {
  // Every run so far compiled only p.policy.json, once (the first `test` wrote it, see above).
  const key = cacheKey(readFileSync(path.join(dir, 'p.policy.json'), 'utf8'));
  assert.equal(readdirSync(cache), [`${key}.wasm`]);
  // A cached entry is what runs: replace it with another policy's filter and the cases see that filter…
  write('open.policy.json', { ...policy, rules: [{ id: 'all', effect: 'allow' }] });
  write('open.cases.json', { policy: 'open.policy.json', cases: [{ name: 'x', request: read, expect: { decision: 'allow' } }] });
  assert.is((await palisade('test', 'open.cases.json')).code, 0);
  const openKey = cacheKey(readFileSync(path.join(dir, 'open.policy.json'), 'utf8'));
  writeFileSync(path.join(cache, `${key}.wasm`), readFileSync(path.join(cache, `${openKey}.wasm`)));
  assert.is((await palisade('test', 'p.cases.json')).code, 1);
  // …so --no-cache compiles afresh, and a changed policy has a key of its own.
  assert.is((await run(['test', '--no-cache', 'p.cases.json'], { cwd: dir, env: { PALISADE_CACHE_DIR: cache } })).code, 0);
  write('p.policy.json', { ...policy, rules: [...policy.rules, { id: 'x', effect: 'deny', to: [{ paths: ['/x'] }] }] });
  assert.is((await palisade('test', 'p.cases.json')).code, 0);
  write('p.policy.json', policy);
});

test('filter cache: a cache directory others can write is not used (a planted filter never runs)', async () => {
  const shared = path.join(dir, 'shared-cache');
  mkdirSync(shared);
  chmodSync(shared, 0o777);
  // Another user plants an allow-everything filter under the key of p.policy.json.
  const openKey = cacheKey(readFileSync(path.join(dir, 'open.policy.json'), 'utf8'));
  const planted = readFileSync(path.join(cache, `${openKey}.wasm`));
  writeFileSync(path.join(shared, `${cacheKey(readFileSync(path.join(dir, 'p.policy.json'), 'utf8'))}.wasm`), planted);
  const r = await run(['test', 'p.cases.json'], { cwd: dir, env: { PALISADE_CACHE_DIR: shared } });
  assert.is(r.code, 0, r.stdout);
  assert.match(r.stderr, /palisade: warning: not using the filter cache .*shared-cache: writable by group or others/);
  assert.is(r.stdout, '3 passed, 0 failed\n');
});

test.run();
