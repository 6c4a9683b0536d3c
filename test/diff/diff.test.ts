/**
 * palisade diff: on real policies, every witness is decided as reported by
 * the real compiled filters (`palisade eval`); on random pairs of policies, every witness is
 * confirmed by the reference interpreter and no request decided differently lies outside the
 * reported regions.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { checkDiff, extras, policy, rules } from './pairs.ts';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Region } from '../../diff/index.ts';
import { palisade } from '../support/cli.ts';
import { compiledFile } from '../support/compiled.ts';
import { cacheKey } from '../../testing/filter-cache.ts';

const OLD = 'test/fixtures/diff/old.policy.json';
const NEW = 'test/fixtures/diff/new.policy.json';
const cache = mkdtempSync(path.join(tmpdir(), 'palisade-diff-'));
test.after(() => rmSync(cache, { recursive: true, force: true }));
// The evals' cache holds both filters, compiled with the code under test by this run
// (test/support/compiled.ts): each `palisade eval` then runs the real filter without paying a
// cold AssemblyScript start of its own (~4 s of CPU per policy).
for (const file of [OLD, NEW]) writeFileSync(path.join(cache, `${cacheKey(readFileSync(file, 'utf8'))}.wasm`), (await compiledFile(file)).wasm);

test('palisade diff: each region with a witness that palisade eval decides as reported, through the real filters; exit 1', async () => {
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
      const e = await palisade(['eval', '--policy', file, '--format', 'json', '--request', JSON.stringify(region.witness)], { env: { PALISADE_CACHE_DIR: cache } });
      assert.is(e.code, 0, e.stderr);
      const got = JSON.parse(e.stdout);
      assert.equal([got.decision, got.status, got.upstreamHeaders ?? {}], [expected.decision, expected.status, expected.inject], `${file} ${JSON.stringify(region.witness)}`);
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
