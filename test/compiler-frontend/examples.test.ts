/**
 * The examples: every policy checks without a diagnostic, and every case file agrees with
 * the reference interpreter of the spec (the compiled filter is checked against the same
 * files by `palisade test`).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { analyze } from '../../compiler/frontend.ts';
import { formatDiagnostic, type CheckedPolicy } from '../../compiler/ast.ts';
import { decide, normalizePath, type CaseRequest, type Outcome } from './oracle.ts';

const EXAMPLES = resolve(import.meta.dirname, '../../examples');
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

interface CaseFile {
  policy: string;
  cases: { name: string; request: CaseRequest; expect: Partial<Outcome> & { decision: string } }[];
}

test('every example case agrees with the reference semantics', () => {
  const caseFiles = files.filter((f) => f.endsWith('.cases.json'));
  assert.ok(caseFiles.length >= 6);
  for (const f of caseFiles) {
    const spec = JSON.parse(readFileSync(f, 'utf8')) as CaseFile;
    const policy = load(join(dirname(f), spec.policy));
    const names = new Set<string>();
    for (const c of spec.cases) {
      assert.not.ok(names.has(c.name), `duplicate case name ${c.name}`);
      names.add(c.name);
      const got = decide(policy, c.request);
      const where = `${f}: ${c.name}`;
      assert.is(got.decision, c.expect.decision, where);
      if (c.expect.status !== undefined) assert.is(got.status, c.expect.status, where);
      for (const [h, v] of Object.entries(c.expect.upstreamHeaders ?? {})) assert.is(got.upstreamHeaders?.[h], v, `${where}: ${h}`);
    }
  }
});

test('the examples cover the hostile inputs the issue names', () => {
  const all = files.filter((f) => f.endsWith('.cases.json')).flatMap((f) => (JSON.parse(readFileSync(f, 'utf8')) as CaseFile).cases);
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

test.run();
