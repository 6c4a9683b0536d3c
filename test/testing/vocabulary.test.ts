/**
 * One vocabulary: the decision reasons the policy filter's source can record, the list
 * testing/decision-line.ts keeps (and case files are checked against), the case-file
 * schema's enum and docs/cases.md's table are the same set, and the sidecar's fingerprint
 * refusals use those words; the case-file parser and the
 * published schema know the same members and accept every example.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import schema from '../../schema/cases.schema.json' with { type: 'json' };
import { REASONS } from '../../testing/decision-line.ts';
import { FIELDS, parseCaseFile } from '../../testing/cases.ts';
import { FINGERPRINT_REASONS, SIDECAR_REASONS } from '../../agent/sidecar/refusal-reasons.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const read = (f: string) => readFileSync(path.join(ROOT, f), 'utf8');
const sorted = (xs: Iterable<string>) => [...new Set(xs)].sort();

test('the filter records exactly the reasons testing/decision-line.ts lists', () => {
  const exports = read('filters/policy/exports.ts');
  const fingerprint = read('filters/policy/fingerprint.ts');
  const request = read('runtime/request.ts'); // why the verified claims could not be read
  const recorded = [
    ...[...exports.matchAll(/finish\([A-Z_]+, (?:[^"]*\? )?"([a-z_]+)"(?: : "([a-z_]+)")?/g)].flatMap((m) => [m[1], m[2]].filter(Boolean)),
    ...[...fingerprint.matchAll(/return "(fingerprint_[a-z_]+)"/g)].map((m) => m[1]),
    ...[...request.matchAll(/return "(metadata_[a-z_]+)"/g)].map((m) => m[1]),
  ];
  assert.ok(recorded.length > 15, 'the reasons were found in the filter source');
  assert.equal(sorted(recorded), sorted(Object.keys(REASONS)));
});

test('the case-file schema and docs/cases.md list the same reasons', () => {
  assert.equal(sorted(schema.$defs.expect.properties.reason.enum), sorted(Object.keys(REASONS)));
  const documented = [...read('docs/cases.md').matchAll(/^\| `([a-z_]+)` \| (?:allow|deny|unauthenticated) /gm)].map((m) => m[1]);
  assert.equal(sorted(documented), sorted([...Object.keys(REASONS), ...Object.keys(SIDECAR_REASONS)]));
});

test('the sidecar logs its fingerprint refusals in the same words', () => {
  const known = new Set([...Object.keys(REASONS), ...Object.keys(SIDECAR_REASONS)]);
  for (const [verifier, logged] of Object.entries(FINGERPRINT_REASONS)) assert.ok(known.has(logged), `${verifier} → ${logged}`);
  assert.equal(sorted(Object.values(FINGERPRINT_REASONS).filter((r) => r in SIDECAR_REASONS)), sorted(Object.keys(SIDECAR_REASONS)));
});

test('the parser and the schema know the same members', () => {
  assert.equal(sorted(Object.keys(schema.properties)), sorted(FIELDS.file));
  assert.equal(sorted(Object.keys(schema.$defs.case.properties)), sorted(FIELDS.case));
  assert.equal(sorted(Object.keys(schema.$defs.request.properties)), sorted(FIELDS.request));
  assert.equal(sorted(Object.keys(schema.$defs.expect.properties)), sorted(FIELDS.expect));
});

test('every example case file passes both the schema and the parser', () => {
  const validate = new Ajv2020({ allErrors: true, strict: true }).compile(schema);
  const files = readdirSync(path.join(ROOT, 'examples'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.cases.json'));
  assert.ok(files.length >= 5);
  for (const f of files) {
    const text = read(`examples/${f}`);
    assert.ok(validate(JSON.parse(text)), `${f}: ${JSON.stringify(validate.errors)}`);
    assert.ok(parseCaseFile(f, text).cases.length > 0);
  }
});

test('the schema refuses what the parser refuses: an empty case list, an unknown reason, an unknown member', () => {
  const validate = new Ajv2020({ strict: true }).compile(schema);
  const ok = { policy: 'p.json', cases: [{ name: 'a', request: { method: 'GET', path: '/' }, expect: { decision: 'deny' } }] };
  assert.ok(validate(ok));
  assert.not.ok(validate({ ...ok, cases: [] }));
  assert.not.ok(validate({ ...ok, cases: [{ ...ok.cases[0], expect: { decision: 'deny', reason: 'nope' } }] }));
  assert.not.ok(validate({ ...ok, cases: [{ ...ok.cases[0], request: { method: 'GET', path: '/', sorce: 'x' } }] }));
});

test.run();
