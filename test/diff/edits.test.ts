/**
 * diff on the pairs review sees: NEW is OLD (up to 12 random rules) with one to three edits
 * (a rule added, removed, replaced or moved), so most rules are common to both versions and
 * diff compares only what the edits touch (diff/changes.ts). Every witness must be confirmed
 * and no request decided differently may lie outside the reported regions, as for unrelated
 * random pairs (diff.test.ts).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { checkDiff, extras, policy, rule, rules, type RuleDoc } from './pairs.ts';
import { diffPolicies } from '../../diff/index.ts';
import { decide } from '../../testing/oracle.ts';

type Edit = { kind: 'add' | 'remove' | 'replace' | 'move'; at: number; to: number; rule: RuleDoc };
const edit: fc.Arbitrary<Edit> = fc.record({ kind: fc.constantFrom('add', 'remove', 'replace', 'move'), at: fc.nat(), to: fc.nat(), rule });

function apply(rs: RuleDoc[], edits: Edit[]): RuleDoc[] {
  const out = [...rs];
  for (const e of edits) {
    const at = e.at % (out.length + 1);
    if (e.kind === 'add') out.splice(at, 0, e.rule);
    else if (out.length && e.kind === 'remove') out.splice(at % out.length, 1);
    else if (out.length && e.kind === 'replace') out[at % out.length] = e.rule;
    else if (out.length) out.splice(e.to % out.length, 0, ...out.splice(at % out.length, 1));
  }
  return out;
}

test('edited pairs: every witness is confirmed, and every request decided differently lies in a reported region', () => {
  const seen = { witnesses: 0, differing: 0, unwitnessed: 0 };
  fc.assert(fc.property(rules(12), fc.array(edit, { minLength: 1, maxLength: 3 }), fc.boolean(), extras, (base, edits, federate, xs) => {
    checkDiff(policy(base, federate), policy(apply(base, edits), federate), xs, seen);
  }), { numRuns: 200, seed: 17 });
  // Not vacuous: the edits did change decisions, and diff found witnesses for nearly every region.
  assert.ok(seen.witnesses > 40 && seen.differing > 40, JSON.stringify(seen));
  assert.ok(seen.unwitnessed * 10 < seen.witnesses, JSON.stringify(seen));
});

// The edits the pruning must not lose, each once for certain.
const front = 'spiffe://corp.test/ns/web/sa/front';
const injecting: RuleDoc = { effect: 'allow', from: [front], to: [{ paths: ['/cards'] }], inject: { 'x-card': "request.headers['x-tenant']" } };
const plain: RuleDoc = { effect: 'allow', from: [front], to: [{ paths: ['/cards'] }] };
const other: RuleDoc = { effect: 'allow', from: [front], to: [{ paths: ['/admin/**'] }] };
const acme = [{ tenant: 'acme', scope: '', v: '1', card: 'c1' }];

test('edited pairs: two common allow rules that swap places change which one injects', () => {
  const seen = { witnesses: 0, differing: 0, unwitnessed: 0 };
  checkDiff(policy([injecting, plain], false), policy([plain, injecting], false), acme, seen);
  assert.ok(seen.witnesses > 0 && seen.differing > 0, JSON.stringify(seen));
});

test('edited pairs: a header no rule injected any more is passed through on routes no edited rule names', () => {
  const seen = { witnesses: 0, differing: 0, unwitnessed: 0 };
  checkDiff(policy([injecting, other], false), policy([plain, other], false), acme, seen);
  assert.ok(seen.differing > 1 && seen.witnesses > 1, JSON.stringify(seen));
});

test('a switch to dry-run is one region, every refused request, with a witness decided as reported', () => {
  const [a, b] = [policy([injecting, other], false), { ...policy([injecting, other], false), mode: 'dry-run' as const }];
  const regions = diffPolicies(a, b);
  assert.is(regions.length, 1);
  const [r] = regions;
  assert.equal([r.old.decision, r.old.status, r.new.decision, r.new.status], ['unauthenticated', 401, 'unauthenticated', 200]);
  assert.equal([decide(a, r.witness!).status, decide(b, r.witness!).status], [401, 200]);
});

test.run();
