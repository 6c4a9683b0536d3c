/**
 * palisade diff: on real policies, every witness is decided as reported by
 * the real compiled filters in the strict host, as `palisade eval` runs them (its own
 * process is tested in e2e/tooling); on random pairs of policies, every witness is
 * confirmed by the reference interpreter and no request decided differently lies outside the
 * reported regions.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { checkDiff, extras, policy, rules } from './pairs.ts';
import type { Region } from '../../diff/index.ts';
import { palisade } from '../support/cli.ts';
import { compiledFile } from '../support/compiled.ts';
import { FilterSet } from '../../testing/filter-set.ts';
import { evaluate, forwardedHeaders, parseRequest } from '../../testing/cases.ts';

const OLD = 'test/fixtures/diff/old.policy.json';
const NEW = 'test/fixtures/diff/new.policy.json';

/** What `palisade eval --format json --request <json>` answers: the policy's filter (compiled once per run) in the strict host. */
async function evaluated(file: string, json: string) {
  const request = parseRequest('--request', json);
  const { wasm, plan } = await compiledFile(file);
  const filters = new FilterSet(wasm, file);
  try {
    const result = await evaluate(await filters.for(undefined), request, plan.service, 'diff-test');
    if (typeof result === 'string') throw new Error(result);
    return [result.decision?.decision, result.outcome.status, forwardedHeaders(result.outcome, plan.strip) ?? {}];
  } finally {
    await filters.close();
  }
}

test('palisade diff: each region with a witness that the real filters decide as reported; exit 1', async () => {
  const r = await palisade(['diff', OLD, NEW, '--format', 'json']);
  assert.is(r.code, 1, r.stderr);
  const { equivalent, regions } = JSON.parse(r.stdout) as { equivalent: boolean; regions: Region[] };
  assert.is(equivalent, false);
  assert.equal(regions.map((x) => `${x.method} ${x.paths} ${x.old.decision}→${x.new.decision}`).sort(), [
    'DELETE /cards/{id} deny→allow', 'DELETE /cards/{id} deny→allow', 'HEAD /healthz allow→deny',
  ]);
  for (const region of regions) {
    assert.ok(region.witness, JSON.stringify(region));
    for (const [file, expected] of [[OLD, region.old], [NEW, region.new]] as const) {
      assert.equal(await evaluated(file, JSON.stringify(region.witness)), [expected.decision, expected.status, expected.inject], `${file} ${JSON.stringify(region.witness)}`);
    }
  }
});

test('palisade diff: equivalent versions exit 0; different services or a broken policy exit 2', async () => {
  const same = await palisade(['diff', OLD, OLD]);
  assert.is(same.code, 0, same.stderr);
  assert.is(same.stdout, 'equivalent: no request is decided differently\n');
  const other = await palisade(['diff', OLD, 'examples/demo/ledger.policy.json']);
  assert.is(other.code, 2);
  assert.match(other.stderr, /diff compares versions of one service's policy/);
  assert.is((await palisade(['diff', OLD, 'no-such.json'])).code, 2);
});

test('random pairs: every witness is confirmed, and every request decided differently lies in a reported region', () => {
  const seen = { witnesses: 0, differing: 0, unwitnessed: 0 };
  fc.assert(fc.property(rules(4), rules(4), fc.boolean(), fc.boolean(), extras, (a, b, fa, fb, xs) => checkDiff(policy(a, fa), policy(b, fb), xs, seen)), { numRuns: 150, seed: 17 });
  // Not vacuous: the pairs did differ, and diff found witnesses for nearly every region.
  assert.ok(seen.witnesses > 100 && seen.differing > 100, JSON.stringify(seen));
  assert.ok(seen.unwitnessed * 10 < seen.witnesses, JSON.stringify(seen));
});

test.run();
