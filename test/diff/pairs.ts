/**
 * Random pairs of policies for diff's property tests: rules drawn from small pools, so that
 * they overlap in interesting ways, and the check every pair must pass: each witness is
 * decided as reported by the reference interpreter, and every request of every cell that
 * the versions decide differently lies in a reported region.
 */
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { analyze } from '../../compiler/frontend/index.ts';
import type { CheckedPolicy } from '../../compiler/frontend/ast.ts';
import { cellRequests, diffPolicies } from '../../diff/index.ts';
import { decide, traceRules, type CaseRequest, type Outcome } from '../../testing/oracle.ts';
import { fingerprintClaims } from '../../testing/fingerprint.ts';
import { printExpr } from '../../compiler/ir/ir.ts';

const SERVICE = 'spiffe://corp.test/ns/app/sa/api';
const FROM = ['spiffe://corp.test/ns/web/sa/front', 'spiffe://corp.test/ns/web/*/*', 'spiffe://corp.test/ns/**', 'spiffe://partner.test/ns/x/sa/y'];
const PATHS = ['/cards', '/cards/{id}', '/cards/{id}/**', '/{kind}/export', '/admin/**', '/'];
const METHODS = ['GET', 'POST', 'DELETE'];
const WHEN = ["request.headers['x-tenant'] == 'acme'", "'admin' in user.scopes", "request.query['v'] != '2'", "request.method == 'GET'"];

export type RuleDoc = { from?: string[] } & Record<string, unknown>;

export const rule: fc.Arbitrary<RuleDoc> = fc.record({
  effect: fc.constantFrom('allow', 'deny'),
  from: fc.option(fc.subarray(FROM, { minLength: 1 }), { nil: undefined }),
  to: fc.option(fc.array(fc.record({ methods: fc.option(fc.subarray(METHODS, { minLength: 1 }), { nil: undefined }), paths: fc.option(fc.subarray(PATHS, { minLength: 1 }), { nil: undefined }) }), { minLength: 1, maxLength: 2 }), { nil: undefined }),
  when: fc.option(fc.constantFrom(...WHEN), { nil: undefined }),
  inject: fc.option(fc.constant({ 'x-card': 'request.headers[\'x-tenant\']' }), { nil: undefined }),
});
export const rules = (maxLength: number) => fc.array(rule, { maxLength });

/** What the requests of a cell carry besides caller, method and path (`card`: a header one version may strip). */
export const extras = fc.array(fc.record({
  tenant: fc.constantFrom('acme', 'other', ''), scope: fc.constantFrom('admin', 'read', ''), v: fc.constantFrom('1', '2'), card: fc.constantFrom(undefined, 'c1'),
}), { minLength: 1, maxLength: 4 });

/** `rs` as a policy; without federation, patterns of partner.test (which the checker would refuse) are left out. */
export function policy(rs: RuleDoc[], federate: boolean): CheckedPolicy {
  const own = (r: RuleDoc) => (federate || !r.from ? r : { ...r, from: r.from.filter((f) => !f.includes('partner.test')) });
  const doc = { palisade: 1, name: 'p', service: SERVICE, ...(federate ? { federatesWith: ['partner.test'] } : {}),
    rules: rs.map(own).filter((r) => !r.from || r.from.length).map((r, i) => ({ id: `r${i}`, ...Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)) })) };
  const { policy: p, diagnostics } = analyze('p.json', JSON.stringify(doc));
  if (!p) throw new Error(diagnostics.map((d) => d.message).join('; '));
  return p;
}

const outcome = (p: CheckedPolicy, req: CaseRequest): Outcome =>
  decide(p, { ...req, fingerprint: fingerprintClaims({ caller: req.source!, service: p.service, method: req.method, path: req.path }) });
const verdict = (o: Outcome) => JSON.stringify([o.decision, o.status, o.decision === 'allow' ? o.upstreamHeaders : {}]);

/**
 * A request's trust domain, the rules of each version whose `from` and `to` match it (by the
 * reference interpreter) and its method, when one of those rules names it (else any method).
 */
function metBy(a: CheckedPolicy, b: CheckedPolicy, req: CaseRequest): string {
  const met = [a, b].map((p) => (traceRules(p, req) ?? []).flatMap((t, i) => (t.caller && (p.rules[i].to === null || t.to.some(Boolean)) ? [p.rules[i]] : [])));
  const named = met.flat().some((r) => r.to?.some((m) => m.methods?.includes(req.method)) || (r.when && printExpr(r.when).includes(JSON.stringify(req.method))));
  return JSON.stringify([req.source!.split('/')[2], named ? req.method : '*', met.map((rs) => rs.map((r) => r.index))]);
}

export interface Seen { witnesses: number; differing: number; unwitnessed: number }

/** diff's regions for the pair, checked as the module comment says; counts go to `seen`. */
export function checkDiff(pa: CheckedPolicy, pb: CheckedPolicy, xs: { tenant: string; scope: string; v: string; card?: string }[], seen: Seen): void {
  const regions = diffPolicies(pa, pb);
  for (const r of regions) {
    if (!r.witness) {
      seen.unwitnessed++;
      continue;
    }
    seen.witnesses++;
    const [old, now] = [verdict(outcome(pa, r.witness)), verdict(outcome(pb, r.witness))];
    assert.is(old, JSON.stringify([r.old.decision, r.old.status, r.old.inject]));
    assert.is(now, JSON.stringify([r.new.decision, r.new.status, r.new.inject]));
    assert.is.not(old, now);
  }
  // Requests of every cell (its representative, with headers, scopes and query drawn at random):
  // each decided differently has a region whose cell the same rules of each version match.
  const reported = new Set(regions.map((r) => metBy(pa, pb, r.cell)));
  for (const cell of cellRequests(pa, pb)) {
    for (const x of xs) {
      const req: CaseRequest = { ...cell, path: `${cell.path}?v=${x.v}`, headers: { 'x-tenant': x.tenant, ...(x.card ? { 'x-card': x.card } : {}) }, user: { sub: 's', scope: x.scope } };
      if (verdict(outcome(pa, req)) === verdict(outcome(pb, req))) continue;
      seen.differing++;
      assert.ok(reported.has(metBy(pa, pb, cell)), `missed: ${JSON.stringify(req)}`);
    }
  }
}
