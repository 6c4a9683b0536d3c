import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseCaseFile, CaseFileError } from '../../testing/cases.ts';
import { decisionOf } from '../../testing/decision-line.ts';

const bin = fileURLToPath(new URL('../../bin/palisade.js', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'palisade-cases-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, value: unknown): string {
  const file = path.join(dir, name);
  writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
  return file;
}

function palisade(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [bin, ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function parseError(text: string): string {
  try {
    parseCaseFile(path.join(dir, 'x.cases.json'), text);
  } catch (err) {
    assert.instance(err, CaseFileError);
    return (err as Error).message;
  }
  assert.unreachable('case file accepted');
  return '';
}

const minimalCase = { name: 'a', request: { method: 'GET', path: '/' }, expect: { decision: 'allow' } };

test('case files: problems are reported at file:line:col', () => {
  assert.match(parseError('{ "policy": "p.json", "cases": [ }'), /x\.cases\.json:1:\d+: /);
  const typo = parseError(JSON.stringify({ policy: 'p.json', cases: [{ ...minimalCase, expect: { decision: 'allow', upstreamHeader: {} } }] }, null, 2));
  assert.match(typo, /x\.cases\.json:\d+:\d+: unknown field "upstreamHeader"/);
  assert.match(typo, '/cases/0/expect/upstreamHeader');
  assert.match(parseError(JSON.stringify({ policy: 'p.json', cases: [{ ...minimalCase, expect: { decision: 'permit' } }] })), '"decision" must be one of allow, deny, unauthenticated');
  assert.match(parseError(JSON.stringify({ cases: [] })), '"policy" must name the policy file');
  assert.match(parseError(JSON.stringify({ policy: 'p.json', cases: [minimalCase, minimalCase] })), 'duplicate case name "a"');
  assert.match(parseError(JSON.stringify({ policy: 'p.json', cases: [{ ...minimalCase, request: { method: 'GET', path: 'cards' } }] })), '"path" must be a string starting with "/"');
  assert.match(parseError(JSON.stringify({ policy: 'p.json', cases: [{ ...minimalCase, request: { method: 'GET', path: '/', headers: { ':path': '/x' } } }] })), 'pseudo-headers');
});

test('case files: the policy resolves against the case file, cases keep their location', () => {
  const cf = parseCaseFile('/srv/policies/a.cases.json', JSON.stringify({ policy: '../p/a.policy.json', cases: [minimalCase] }, null, 2));
  assert.is(cf.policy, '/srv/p/a.policy.json');
  assert.is(cf.cases[0].at, '/srv/policies/a.cases.json:4:5');
});

test('the decision comes from the filter\'s decision log line', () => {
  const line = 'palisade.decision {"decision":"deny","status":403,"rule":"r","mode":"enforce","reason":"deny_rule"}';
  assert.equal(decisionOf({ logs: [{ level: 'info', message: line, contextId: 2 }] }), { decision: 'deny', status: 403, rule: 'r', mode: 'enforce', reason: 'deny_rule' });
  assert.is(decisionOf({ logs: [{ level: 'debug', message: line, contextId: 2 }] }), null);
});

const policy = {
  palisade: 1,
  name: 'cases-test',
  service: 'spiffe://bank.example/ns/payments/sa/card-service',
  rules: [
    {
      id: 'read',
      effect: 'allow',
      from: ['spiffe://bank.example/ns/web/sa/frontend'],
      to: [{ methods: ['GET'], paths: ['/cards/{id}'] }],
      inject: { 'x-user-id': 'user.sub', 'x-card': 'request.params.id' },
    },
  ],
};
const frontend = 'spiffe://bank.example/ns/web/sa/frontend';

test('palisade test: failing cases show expected and actual, the last line counts, exit 1', async () => {
  write('p.policy.json', policy);
  const cases = write('p.cases.json', {
    policy: 'p.policy.json',
    cases: [
      {
        name: 'frontend reads a card',
        request: { method: 'GET', path: '/cards/7?x=1', source: frontend, user: { sub: 'alice' }, headers: { 'x-user-id': 'spoofed' } },
        expect: { decision: 'allow', status: 200, upstreamHeaders: { 'x-user-id': 'alice', 'x-card': '7' }, rule: 'read' },
      },
      { name: 'no client certificate', request: { method: 'GET', path: '/cards/7' }, expect: { decision: 'unauthenticated', status: 401 } },
      { name: 'wrong expectation', request: { method: 'DELETE', path: '/cards/7', source: frontend }, expect: { decision: 'allow', status: 200 } },
    ],
  });
  const run = await palisade('test', cases);
  assert.is(run.code, 1, run.stderr);
  const lines = run.stdout.trimEnd().split('\n');
  assert.is(lines.at(-1), '2 passed, 1 failed');
  assert.match(run.stdout, /FAIL .*p\.cases\.json:\d+:\d+ "wrong expectation"/);
  assert.match(run.stdout, '  decision: expected "allow", got "deny"');
  assert.match(run.stdout, '  status: expected 200, got 403');
  assert.not.match(run.stdout, 'frontend reads a card');
});

/**
 * One `palisade test` process for the case files that all pass (each run compiles the policy
 * from scratch): the ordinary and the hostile cases, asserted by the two tests below.
 */
let passing: Promise<{ good: string; run: Awaited<ReturnType<typeof palisade>> }> | undefined;
function passingRun() {
  passing ??= (async () => {
    write('p.policy.json', policy);
    const good = write('good.cases.json', {
      policy: 'p.policy.json',
      cases: [{ name: 'denied by default', request: { method: 'POST', path: '/cards', source: frontend }, expect: { decision: 'deny', status: 403 } }],
    });
    const hostile = write('hostile.cases.json', {
      policy: 'p.policy.json',
      cases: [
        { name: 'other trust domain', request: { method: 'GET', path: '/cards/7', source: 'spiffe://evil.example/ns/web/sa/frontend' },
          expect: { decision: 'unauthenticated', status: 401, reason: 'foreign_trust_domain' } },
        { name: 'CRLF in a claim', request: { method: 'GET', path: '/cards/7', source: frontend, user: { sub: 'alice\r\nx-admin: true' } },
          expect: { decision: 'deny', status: 403, rule: 'read', reason: 'inject_invalid_value' } },
      ],
    });
    return { good, run: await palisade('test', good, hostile) };
  })();
  return passing;
}

test('palisade test: all passing exits 0; bad input exits 2 before running anything', async () => {
  const { good, run: ok } = await passingRun();
  const bad = write('bad.cases.json', '{\n  "policy": "p.policy.json",\n  "cases": [ { "name": 1 } ]\n}\n');
  assert.is(ok.code, 0, ok.stderr);
  assert.is(ok.stdout, '3 passed, 0 failed\n');
  const refused = await palisade('test', good, bad);
  assert.is(refused.code, 2);
  assert.match(refused.stderr, /bad\.cases\.json:3:\d+: /);
  assert.is(refused.stdout, '');
  write('broken.policy.json', { ...policy, rules: [{ ...policy.rules[0], when: 'request.method >' }] });
  const broken = await palisade('test', write('broken.cases.json', { policy: 'broken.policy.json', cases: [minimalCase] }));
  assert.is(broken.code, 2);
  assert.match(broken.stderr, /broken\.policy\.json:\d+:\d+: error: /);
});

test('case files: a "source" that is not a workload SPIFFE ID is refused with its position', () => {
  const withSource = (source: string) => JSON.stringify({ policy: 'p.json', cases: [{ ...minimalCase, request: { method: 'GET', path: '/', source } }] }, null, 2);
  for (const [source, why] of [
    ['spiffe://bank.example/ns/web/../admin', "'..' is not allowed"],
    ['SPIFFE://bank.example/ns/web', 'lowercase'],
    ['spiffe://bank.example:443/ns/web', 'a port'],
    ['spiffe://bank.example/ns/%77eb', 'percent-encoding'],
    ['spiffe://bank.example', 'needs a path'],
    ['frontend', "starts with 'spiffe://'"],
  ]) {
    const message = parseError(withSource(source));
    assert.match(message, /^.*x\.cases\.json:\d+:\d+: "source" must be a workload SPIFFE ID: /, source);
    assert.match(message, why, source);
    assert.match(message, '(at /cases/0/request/source)', source);
  }
});

test('palisade test: an invalid source exits 2 with one line; a foreign caller and a smuggling injection are not allow/200', async () => {
  write('p.policy.json', policy);
  const invalid = await palisade('test', write('invalid.cases.json', {
    policy: 'p.policy.json',
    cases: [{ name: 'dot-dot', request: { method: 'GET', path: '/cards/7', source: 'spiffe://bank.example/ns/x/../web/sa/frontend' }, expect: { decision: 'allow' } }],
  }));
  assert.is(invalid.code, 2);
  assert.is(invalid.stderr.trimEnd().split('\n').length, 1, invalid.stderr);
  assert.match(invalid.stderr, /invalid\.cases\.json:\d+:\d+: "source" must be a workload SPIFFE ID/);
  const { run: hostile } = await passingRun(); // hostile.cases.json, beside good.cases.json
  assert.is(hostile.code, 0, hostile.stdout + hostile.stderr);
  assert.is(hostile.stdout, '3 passed, 0 failed\n');
});

test.run();
