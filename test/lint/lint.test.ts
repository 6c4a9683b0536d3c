/**
 * palisade lint on real policies through the real front end and optimizer:
 * each finding at its position with its id, sorted and reported once, and the findings that
 * claim "changes nothing" checked against the reference interpreter: deleting what they
 * point at changes no decision.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { checkPolicy, type Checked } from '../../compiler/index.ts';
import { lint, formatFinding } from '../../lint/index.ts';
import { decide, type CaseRequest } from '../../testing/oracle.ts';
import { palisade } from '../support/cli.ts';

const FIXTURE = 'test/fixtures/lint.policy.json';
const text = readFileSync(FIXTURE, 'utf8');

function checked(t: string): Checked {
  const r = checkPolicy(FIXTURE, t);
  if (!r.ok) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r;
}

test('every kind of finding, at file:line:col with its id, sorted by position, each once', () => {
  const found = lint(checked(text)).map((f) => `${f.span.line}:${f.span.col} ${f.id} ${f.message}`);
  assert.equal(found, [
    "7:14 duplicate-method method GET is listed twice in this `to` entry of rule 'read'",
    "7:68 duplicate-path path /cards/{x} matches exactly what /cards/{id} matches (same entry of rule 'read')",
    "7:85 redundant-to this `to` entry of rule 'read' matches nothing that entry 0 does not",
    "8:5 redundant-allow rule 'read-again' allows nothing that rule 'read' (rules[0]) does not already allow",
    "9:61 ambiguous-paths path /{kind}/export of rule 'export' and /cards/{id} of rule 'read' (line 7) (and 3 more) both match some paths, and neither covers the other",
    "10:105 constant-when the `when` of rule 'always' is always true",
    "11:5 dead-rule rule 'never' can never apply: its `when` is always false",
    "12:5 dead-rule rule 'shadowed' can never apply: shadowed by deny rule 'admin' (rules[6]), which matches every request it matches",
    "13:59 ambiguous-paths path /admin/** of rule 'admin' and /{kind}/export of rule 'export' (line 9) both match some paths, and neither covers the other",
  ]);
  assert.match(formatFinding(lint(checked(text))[0]), /^test\/fixtures\/lint\.policy\.json:7:14: warning: .* \[duplicate-method\] \(at \/rules\/0\/to\/0\)$/);
});

test('what lint calls redundant or dead changes no decision when deleted (reference interpreter, many requests)', () => {
  const doc = JSON.parse(text);
  const { policy } = checked(text);
  const without = (ids: string[]) => checked(JSON.stringify({ ...doc, rules: doc.rules.filter((r: { id: string }) => !ids.includes(r.id)) })).policy;
  const pruned = without(['read-again', 'never', 'shadowed']);
  const callers = ['spiffe://bank.example/ns/web/sa/frontend', 'spiffe://bank.example/ns/web/sa/other', 'spiffe://bank.example/ns/ops/sa/x'];
  const paths = ['/cards/7', '/cards/export', '/admin/x', '/admin/export', '/health', '/x/export', '/'];
  let compared = 0;
  for (const source of callers) for (const p of paths) for (const method of ['GET', 'POST']) {
    const req: CaseRequest = { method, path: p, source, fingerprint: { iss: source, sub: source, aud: policy.service, htm: method, htu: p, iat: Date.now() / 1000, exp: Date.now() / 1000 + 30, jti: `${compared}` } };
    assert.equal(decide(pruned, req), decide(policy, req), `${method} ${p} from ${source}`);
    compared++;
  }
  assert.is(compared, 42);
});

test('policies without problems have no findings: every example, and a clean policy exits 0', async () => {
  for (const f of readdirSync('examples', { recursive: true, encoding: 'utf8' }).filter((x) => x.endsWith('.policy.json'))) {
    const file = path.join('examples', f);
    assert.equal(lint(checked(readFileSync(file, 'utf8'))).map(formatFinding), [], file);
  }
  const clean = await palisade(['lint', 'examples/card-service/card-service.policy.json']);
  assert.is(clean.code, 0, clean.stderr);
  assert.is(clean.stdout, '');
});

test('palisade lint: findings on stdout, exit 1; a policy that does not compile: its diagnostics, exit 2', async () => {
  const r = await palisade(['lint', FIXTURE]);
  assert.is(r.code, 1, r.stderr);
  assert.is(r.stdout.trimEnd().split('\n').length, 9);
  assert.match(r.stdout, /^test\/fixtures\/lint\.policy\.json:8:5: warning: rule 'read-again' allows nothing .* \[redundant-allow\] \(at \/rules\/1\)$/m);
  const broken = await palisade(['lint', 'test/fixtures/lint.policy.json', 'no-such.json']);
  assert.is(broken.code, 2);
  assert.match(broken.stderr, /^no-such\.json: error: cannot read policy: ENOENT$/m);
});

test.run();
