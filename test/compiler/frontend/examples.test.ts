/**
 * The examples: every policy checks without a diagnostic, and every case file agrees with
 * the reference interpreter of the spec (the compiled filter is checked against the same
 * files by `palisade test`).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { analyze } from '../../../compiler/frontend/index.ts';
import { formatDiagnostic, type CheckedPolicy } from '../../../compiler/frontend/ast.ts';
import { caseFingerprint, parseCaseFile, type CaseFile } from '../../../testing/cases.ts';
import { decide, normalizePath } from '../../../testing/oracle.ts';
import { SERVICE, policyText } from './helpers.ts';

const SPEC_REASON = /^(fingerprint_\w+|invalid_principal|foreign_trust_domain|inject_invalid_value)$/;
const EXAMPLES = resolve(import.meta.dirname, '../../../examples');
const files = readdirSync(EXAMPLES, { recursive: true, encoding: 'utf8' }).map((f) => join(EXAMPLES, f)).sort();

function load(file: string): CheckedPolicy {
  const r = analyze(file, readFileSync(file, 'utf8'));
  assert.equal(r.diagnostics.map(formatDiagnostic), [], file);
  assert.ok(r.policy);
  return r.policy;
}

test('every example policy checks cleanly', () => {
  const policies = files.filter((f) => f.endsWith('.policy.json'));
  assert.ok(policies.length >= 6);
  for (const f of policies) load(f);
});

const caseFiles = (): CaseFile[] =>
  files.filter((f) => f.endsWith('.cases.json')).map((f) => parseCaseFile(f, readFileSync(f, 'utf8')));

test('every example case agrees with the reference semantics', () => {
  const all = caseFiles();
  assert.ok(all.length >= 6);
  for (const { file, policy: policyFile, cases } of all) {
    const policy = load(policyFile);
    // One run of the file, as `palisade test` makes it: jtis are scoped to it, and the
    // reference filter remembers the fingerprints it accepted during it.
    const run = randomBytes(6).toString('base64url');
    const accepted = new Set<string>();
    for (const c of cases) {
      const where = `${file}: ${c.name}`;
      // The claims jwt_authn would have verified, built as `palisade test` builds them.
      const fingerprint = caseFingerprint(c, run);
      if (typeof fingerprint === 'string') assert.unreachable(`${where}: ${fingerprint}`);
      const got = decide(policy, { ...c.request, fingerprint: fingerprint ?? undefined }, accepted);
      assert.is(got.decision, c.expect.decision, where);
      if (c.expect.status !== undefined) assert.is(got.status, c.expect.status, where);
      // The spec names the caller, fingerprint and injection reasons; the filter's others are its own.
      if (c.expect.reason && SPEC_REASON.test(c.expect.reason)) assert.is(got.reason, c.expect.reason, where);
      for (const [h, v] of Object.entries(c.expect.upstreamHeaders ?? {})) assert.is(got.upstreamHeaders?.[h], v, `${where}: ${h}`);
    }
  }
});

test('the examples cover the hostile inputs the issue names', () => {
  const all = caseFiles().flatMap((f) => f.cases);
  const paths = all.map((c) => c.request.path);
  for (const needle of ['/../', '%2F', '%5C', '//', '#']) assert.ok(paths.some((p) => p.includes(needle)), needle);
  assert.ok(all.some((c) => c.request.method !== c.request.method.toUpperCase()), 'a lowercase method');
  assert.ok(all.some((c) => !c.request.source && c.expect.decision === 'unauthenticated'), 'no client certificate');
  assert.ok(all.some((c) => c.request.headers && c.expect.upstreamHeaders), 'spoofed injected headers');
});

test('reference normalization: decoding, dot segments, merged slashes, rejections', () => {
  assert.is(normalizePath('/a/../admin'), '/admin');
  assert.is(normalizePath('//a///b?x=/../y'), '/a/b');
  assert.is(normalizePath('/%61%7e/%20'), '/a~/%20');
  for (const bad of ['/a%2Fb', '/a%2fb', '/a%5Cb', '/a#b', '/a%zz', '/a%2', '/a%00', 'a']) assert.is(normalizePath(bad), null, bad);
});

test('reference fingerprints: each check in the order of the table in docs/policy.md, replay only of accepted jtis, dry-run', () => {
  const policyOf = (mode: string) => analyze('p.policy.json', policyText([{ id: 'any', effect: 'allow' }], { mode })).policy!;
  const enforce = policyOf('enforce');
  const caller = 'spiffe://bank.example/ns/web/sa/frontend';
  const now = Date.now() / 1000; // unrounded: the margins below stay whole seconds
  const base = { method: 'GET', path: '/cards?page=2', source: caller };
  const claims = (over: Record<string, unknown> = {}) =>
    ({ iss: caller, sub: caller, aud: SERVICE, htm: 'GET', htu: '/cards', iat: now, exp: now + 30, jti: randomBytes(8).toString('hex'), ...over });
  const reason = (fingerprint: unknown, req: object = {}) => decide(enforce, { ...base, ...req, fingerprint }).reason ?? 'accepted';
  assert.is(reason(claims()), 'accepted');
  assert.is(reason(undefined), 'fingerprint_missing');
  for (const bad of [null, 'a.b.c', [], claims({ jti: undefined }), claims({ iat: String(now) }), claims({ aud: [SERVICE] })]) {
    assert.is(reason(bad), 'fingerprint_malformed', JSON.stringify(bad));
  }
  // Each claim wrong on its own, and with a later claim wrong too: the earlier check decides.
  const wrong: [Record<string, unknown>, string][] = [
    [{ sub: 'spiffe://bank.example/x', iss: 'spiffe://bank.example/x', htm: 'PUT' }, 'fingerprint_sub'],
    [{ iss: 'spiffe://bank.example/x', aud: 'spiffe://bank.example/y' }, 'fingerprint_iss'],
    [{ aud: 'spiffe://bank.example/y', htm: 'get' }, 'fingerprint_aud'],
    [{ htm: 'get', htu: '/cards?page=2' }, 'fingerprint_htm'],
    [{ htu: '/cards?page=2', exp: now - 6 }, 'fingerprint_htu'],
    [{ htu: '/Cards' }, 'fingerprint_htu'],
    [{ iat: now - 30, exp: now - 6 }, 'fingerprint_exp'],
    [{ iat: now + 6, exp: now + 20 }, 'fingerprint_iat'],
    [{ iat: now - 36, exp: now - 4 }, 'fingerprint_iat'],
    [{ iat: now - 10, exp: now + 21 }, 'fingerprint_lifetime'],
  ];
  for (const [over, expected] of wrong) assert.is(reason(claims(over)), expected, JSON.stringify(over));
  // Within the skew and the lifetime: accepted.
  assert.is(reason(claims({ iat: now + 4, exp: now - 4 })), 'accepted');
  assert.is(reason(claims({ iat: now - 34, exp: now - 4 })), 'accepted');
  // Identity and path come first: no caller is 401 without a reason, a bad path 400.
  assert.equal(decide(enforce, { ...base, source: undefined }), { decision: 'unauthenticated', status: 401, rule: null });
  assert.is(decide(enforce, { ...base, path: '/a%2Fb' }).status, 400);
  // Replay: a jti is remembered once accepted (whatever the rules then say), not when refused.
  const accepted = new Set<string>();
  const once = (over: Record<string, unknown>) => decide(enforce, { ...base, fingerprint: claims({ jti: 'j', ...over }) }, accepted);
  assert.is(once({ htm: 'PUT' }).reason, 'fingerprint_htm');
  assert.equal(once({}), { decision: 'allow', status: 200, rule: 'any', upstreamHeaders: {} });
  assert.equal(once({}), { decision: 'unauthenticated', status: 401, rule: null, reason: 'fingerprint_replay' });
  // Dry-run forwards a refused fingerprint and still records its decision and reason.
  const dry = policyOf('dry-run');
  assert.equal(decide(dry, { ...base, fingerprint: claims({ aud: 'spiffe://bank.example/y' }) }), { decision: 'unauthenticated', status: 200, rule: null, reason: 'fingerprint_aud' });
});

test.run();
