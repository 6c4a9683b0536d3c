/**
 * palisade diff: on real policies, every witness is decided as reported by
 * the real compiled filters (`palisade eval`); on random pairs of policies, every witness is
 * confirmed by the reference interpreter and no request decided differently lies outside the
 * reported regions.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { analyze } from '../../compiler/frontend/index.ts';
import type { CheckedPolicy } from '../../compiler/frontend/ast.ts';
import { cellRequests, diffPolicies, type Region } from '../../diff/index.ts';
import { decide, type CaseRequest, type Outcome } from '../../testing/oracle.ts';
import { fingerprintClaims } from '../../testing/fingerprint.ts';
import { palisade } from '../support/cli.ts';

const OLD = 'test/fixtures/diff/old.policy.json';
const NEW = 'test/fixtures/diff/new.policy.json';
const cache = mkdtempSync(path.join(tmpdir(), 'palisade-diff-'));
test.after(() => rmSync(cache, { recursive: true, force: true }));

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

// Random pairs: rules drawn from small pools, so that they overlap in interesting ways.
const SERVICE = 'spiffe://corp.test/ns/app/sa/api';
const FROM = ['spiffe://corp.test/ns/web/sa/front', 'spiffe://corp.test/ns/web/*/*', 'spiffe://corp.test/ns/**', 'spiffe://partner.test/ns/x/sa/y'];
const PATHS = ['/cards', '/cards/{id}', '/cards/{id}/**', '/{kind}/export', '/admin/**', '/'];
const METHODS = ['GET', 'POST', 'DELETE'];
const WHEN = ["request.headers['x-tenant'] == 'acme'", "'admin' in user.scopes", "request.query['v'] != '2'", "request.method == 'GET'"];

const rule = fc.record({
  effect: fc.constantFrom('allow', 'deny'),
  from: fc.option(fc.subarray(FROM, { minLength: 1 }), { nil: undefined }),
  to: fc.option(fc.array(fc.record({ methods: fc.option(fc.subarray(METHODS, { minLength: 1 }), { nil: undefined }), paths: fc.option(fc.subarray(PATHS, { minLength: 1 }), { nil: undefined }) }), { minLength: 1, maxLength: 2 }), { nil: undefined }),
  when: fc.option(fc.constantFrom(...WHEN), { nil: undefined }),
  inject: fc.option(fc.constant({ 'x-card': 'request.headers[\'x-tenant\']' }), { nil: undefined }),
});
const rules = fc.array(rule, { maxLength: 4 });

/** `rs` as a policy; without federation, patterns of partner.test (which the checker would refuse) are left out. */
function policy(rs: { from?: string[] }[], federate: boolean): CheckedPolicy {
  const own = (r: { from?: string[] }) => (federate || !r.from ? r : { ...r, from: r.from.filter((f) => !f.includes('partner.test')) });
  const doc = { palisade: 1, name: 'p', service: SERVICE, ...(federate ? { federatesWith: ['partner.test'] } : {}),
    rules: rs.map(own).filter((r) => !r.from || r.from.length).map((r, i) => ({ id: `r${i}`, ...Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)) })) };
  const { policy: p, diagnostics } = analyze('p.json', JSON.stringify(doc));
  if (!p) throw new Error(diagnostics.map((d) => d.message).join('; '));
  return p;
}

const outcome = (p: CheckedPolicy, req: CaseRequest): Outcome =>
  decide(p, { ...req, fingerprint: fingerprintClaims({ caller: req.source!, service: p.service, method: req.method, path: req.path }) });
const verdict = (o: Outcome) => JSON.stringify([o.decision, o.status, o.decision === 'allow' ? o.upstreamHeaders : {}]);

test('random pairs: every witness is confirmed, and every request decided differently lies in a reported region', () => {
  let witnesses = 0;
  let differing = 0;
  let unwitnessed = 0;
  fc.assert(fc.property(rules, rules, fc.boolean(), fc.boolean(), fc.array(fc.record({
    tenant: fc.constantFrom('acme', 'other', ''), scope: fc.constantFrom('admin', 'read', ''), v: fc.constantFrom('1', '2'),
  }), { minLength: 1, maxLength: 4 }), (a, b, fa, fb, extras) => {
    const [pa, pb] = [policy(a, fa), policy(b, fb)];
    const regions = diffPolicies(pa, pb);
    for (const r of regions) {
      if (!r.witness) {
        unwitnessed++;
        continue;
      }
      witnesses++;
      assert.is(verdict(outcome(pa, r.witness)), JSON.stringify([r.old.decision, r.old.status, r.old.inject]));
      assert.is(verdict(outcome(pb, r.witness)), JSON.stringify([r.new.decision, r.new.status, r.new.inject]));
      assert.is.not(verdict(outcome(pa, r.witness)), verdict(outcome(pb, r.witness)));
    }
    // Requests of every cell (its representative, with headers, scopes and query drawn at random).
    const reported = new Set(regions.map((r) => JSON.stringify(r.cell)));
    for (const cell of cellRequests(pa, pb)) {
      for (const x of extras) {
        const req: CaseRequest = { ...cell, path: `${cell.path}?v=${x.v}`, headers: { 'x-tenant': x.tenant }, user: { sub: 's', scope: x.scope } };
        if (verdict(outcome(pa, req)) === verdict(outcome(pb, req))) continue;
        differing++;
        assert.ok(reported.has(JSON.stringify(cell)), `missed: ${JSON.stringify(req)}`);
      }
    }
  }), { numRuns: 150, seed: 17 });
  // Not vacuous: the pairs did differ, and diff found witnesses for nearly every region.
  assert.ok(witnesses > 100 && differing > 100, `${witnesses} witnesses, ${differing} differing requests`);
  assert.ok(unwitnessed * 10 < witnesses, `${unwitnessed} regions without a witness of ${witnesses + unwitnessed}`);
});

test.run();
