/**
 * `palisade diff OLD NEW`: which requests two versions of a policy decide differently,
 * worked out on the checked policies, not by sampling.
 *
 * Only where a change can show is looked at (diff/changes.ts): the callers and routes of each
 * rule one version has and the other lacks (or has in another order), every caller of a
 * trust domain one version admits and the other does not, every allowed request when the
 * versions strip different injectable headers, and (one region of its own) every refused
 * request when the mode changes. Each such footprint is cut into cells that no rule meeting
 * it can tell apart (diff/classes.ts): caller classes by `from` patterns, methods, path
 * classes by templates, one representative request each. Within a cell `from` and `to` are
 * fixed; what still varies is only the `when` and `inject` expressions of the rules that
 * match there, and a policy of just those rules decides every request of the cell as the
 * whole one does. So a cell is:
 * - unchanged when both versions match the same deny rules and the same allow rules in the
 *   same order with the same `when`/`inject` text (the decision is then the same function of
 *   the request in both), and the caller is admitted or refused (401) alike;
 * - changed otherwise: the witness (the representative, then variants that set the headers,
 *   query parameters and claims the conditions compare with the constants they name) is run
 *   through both versions with the reference interpreter, and the first request decided
 *   differently is the region's witness. When no variant differs, diff/symbolic.ts checks
 *   whether the versions agree under every truth value of the conditions; if they do, the
 *   cell is unchanged; if not, it is still reported, with `witness: null`: its difference
 *   depends on conditions no variant met together (never a missed change).
 * A region is every request with the cell's trust domain and method (any method where no
 * rule matches) that exactly the cell's rules of each version match, through the same of
 * their patterns and templates: cells of different footprints alike in that are one region.
 */
import type { CheckedPolicy, CheckedRule, PrincipalPattern, TExpr } from '../compiler/frontend/ast.ts';
import { printExpr } from '../compiler/ir/ir.ts';
import { decide, traceRules, type CaseRequest, type Outcome } from '../testing/oracle.ts';
import { fingerprintClaims } from '../testing/fingerprint.ts';
import { sameForAllConditions } from './symbolic.ts';
import { changedRules } from './changes.ts';
import { footprintOf, ownDomain, RuleIndex, type Footprint } from './near.ts';
import { eachExpr } from './expr.ts';
import { callerClasses, methodClasses, namedMethods, pathClasses, uniqueBy, type CallerClass, type PathClass } from './classes.ts';

export interface Region {
  /** The caller class: the `from` patterns its callers match (in either version), or the trust domain when none. */
  callers: string;
  method: string;
  /** The path class: the templates its paths match, or `(no template)`. */
  paths: string;
  /** The conditions that differ between the versions here, `true` when none (the change is unconditional). */
  condition: string;
  old: Decided;
  new: Decided;
  /** A concrete request in the region decided `old` by OLD and `new` by NEW; null: none found (see module comment). */
  witness: CaseRequest | null;
  /** The cell's representative request (caller, method, path), witness or not. */
  cell: CaseRequest;
}

/** What a version does with the witness: decision, deciding rule, injected headers. */
export interface Decided {
  decision: Outcome['decision'];
  status: number;
  rule: string | null;
  inject: Record<string, string>;
}

const admits = (p: CheckedPolicy, td: string) => td === ownDomain(p) || p.federatesWith.includes(td);

/** The cells of the footprint that `rules` (every rule that can meet it) tell apart. */
function cellsWithin(f: Footprint, rules: CheckedRule[]): { caller: CallerClass; method: string; p: PathClass }[] {
  const callers = 'domain' in f.callers
    ? callerClasses(rules, f.callers.domain)
    : uniqueBy(f.callers.flatMap((p) => callerClasses(rules, p.trustDomain, p)), (c) => c.id);
  const routes = uniqueBy((f.to ?? [null]).flatMap((e) => {
    const paths = pathClasses(rules, e?.paths);
    return methodClasses(rules, e?.methods).flatMap((method) => paths.map((p) => ({ method, p })));
  }), (x) => `${x.method} ${x.p.path}`);
  return callers.flatMap((caller) => routes.map((r) => ({ caller, ...r })));
}

/** Does the rule's `from` and `to` match the cell (read off the classes' pattern sets)? */
function matchesCell(policy: CheckedPolicy, r: CheckedRule, caller: CallerClass, method: string, p: PathClass): boolean {
  if (!(r.from ? r.from.some((f) => caller.patterns.has(f.text)) : caller.trustDomain === ownDomain(policy))) return false;
  return !r.to || r.to.some((m) => (!m.methods || m.methods.includes(method)) && (!m.paths || m.paths.some((t) => p.templates.has(t.text))));
}

/** A rule that never applies and injects every header `policy` may inject, so that a policy of a few of its rules strips the same headers. */
function carrier(policy: CheckedPolicy): CheckedRule[] {
  const headers = injectable(policy);
  if (!headers.size) return [];
  const span = policy.rules[0].span;
  const never: PrincipalPattern = { text: '(never)', trustDomain: '', segments: [], rest: false, span };
  return [{ id: '(carrier)', index: Number.MAX_SAFE_INTEGER, effect: 'allow', span, from: [never], to: null, when: null,
    inject: [...headers].map((header) => ({ header, value: { k: 'str', v: '', t: 'string', span }, span })) }];
}

const injectable = (p: CheckedPolicy) => new Set(p.rules.flatMap((r) => r.inject.map((i) => i.header)));

/**
 * Every region where OLD and NEW decide differently. Both must protect the same service.
 * Only cells a change touches (diff/changes.ts, admission, injected header names) are
 * compared, each on the few rules that meet it: the work grows with the change, not the policy.
 */
export function diffPolicies(oldPolicy: CheckedPolicy, newPolicy: CheckedPolicy): Region[] {
  const regions: Region[] = [];
  if (oldPolicy.mode !== newPolicy.mode) regions.push(modeRegion(oldPolicy, newPolicy));
  const changed = changedRules(oldPolicy, newPolicy);
  const [oldHeaders, newHeaders] = [injectable(oldPolicy), injectable(newPolicy)];
  const stripDiffers = [...oldHeaders].filter((h) => !newHeaders.has(h)).concat([...newHeaders].filter((h) => !oldHeaders.has(h)));
  const footprints: Footprint[] = [
    ...changed.old.map((r) => footprintOf(oldPolicy, r)),
    ...changed.new.map((r) => footprintOf(newPolicy, r)),
    // A header one version may inject is stripped from every request it allows, and passed by the other.
    ...(stripDiffers.length ? [oldPolicy, newPolicy].flatMap((p) => p.rules.filter((r) => r.effect === 'allow').map((r) => footprintOf(p, r))) : []),
    ...[...new Set([...oldPolicy.federatesWith, ...newPolicy.federatesWith])]
      .filter((td) => admits(oldPolicy, td) !== admits(newPolicy, td)).map((domain) => ({ callers: { domain }, to: null })),
  ];
  const versions = [oldPolicy, newPolicy].map((policy) => ({ policy, carrier: carrier(policy), index: new RuleIndex(policy) }));
  const seen = new Set<string>();
  for (const f of footprints) {
    const near = versions.map(({ index }) => index.near(f));
    for (const { caller, method, p } of cellsWithin(f, [...near[0], ...near[1]])) {
      const matched = near.map((rules, v) => rules.filter((r) => matchesCell(versions[v].policy, r, caller, method, p)));
      // A cell of an earlier footprint may come again: it is the same when it has the same trust domain, method, rules met, and patterns and templates of theirs matched.
      // A method none of the rules met names is decided like any other such method.
      const mine = new Set(matched.flat().flatMap((r) => [...(r.from ?? []).map((f) => f.text), ...(r.to ?? []).flatMap((m) => (m.paths ?? []).map((t) => t.text))]));
      const key = JSON.stringify([caller.trustDomain, namedMethods(matched.flat()).has(method) ? method : '*', ...matched.map((rs) => rs.map((r) => r.index)),
        [...caller.patterns].filter((x) => mine.has(x)).sort(), [...p.templates].filter((x) => mine.has(x)).sort()]);
      if (seen.has(key)) continue;
      seen.add(key);
      // A policy of only the rules met here (and the header-stripping carrier) decides every request of the cell as the whole one does.
      const [o, n] = versions.map(({ policy, carrier }, v) => ({ ...policy, rules: [...matched[v], ...carrier] }));
      const region = compareCell(o, n, { caller, method, p }, stripDiffers);
      if (region) regions.push(region);
    }
  }
  return regions;
}

/**
 * A switch between enforce and dry-run changes the status of every request either version
 * refuses (403 or 401 in enforce, 200 in dry-run): one region, whose witness is a request
 * without a verified caller. Cells are then compared as if both had OLD's mode.
 */
function modeRegion(a: CheckedPolicy, b: CheckedPolicy): Region {
  const witness: CaseRequest = { method: 'GET', path: '/' };
  return { callers: 'every caller', method: '*', paths: 'every path', condition: `mode ${a.mode} → ${b.mode}: every request refused`,
    old: decided(decide(a, witness)), new: decided(decide(b, witness)), witness, cell: witness };
}

/**
 * The rules that match `req`'s caller and route, and the part of them that decides within the
 * cell, as text: equal texts mean the same decision for every request of the cell. Deny
 * rules count as a set (any one denies); an unconditional one, or no allow rule at all,
 * makes the cell deny whatever the request. Allow rules count in order up to the first that
 * always applies (no `when`, no `inject` that could fail); later ones never decide there.
 */
function signature(policy: CheckedPolicy, req: CaseRequest): { text: string; rules: CheckedRule[] } | null {
  const traces = traceRules(policy, req);
  if (!traces) return null;
  const rules = policy.rules.filter((r, i) => traces[i].caller && (r.to === null || traces[i].to.some(Boolean)));
  const denies = rules.filter((r) => r.effect === 'deny');
  const allows = rules.filter((r) => r.effect === 'allow').sort((x, y) => x.index - y.index);
  const always = allows.findIndex((r) => !r.when && !r.inject.length);
  const deciding = always < 0 ? allows : allows.slice(0, always + 1);
  if (!allows.length || denies.some((r) => !r.when)) return { text: 'deny', rules };
  const show = (r: CheckedRule) => `when ${r.when ? printExpr(r.when) : 'true'} inject ${r.inject.map((x) => `${x.header}=${printExpr(x.value)}`).join(',')}`;
  return { text: `${denies.map(show).sort().join(' | ')} || ${deciding.map(show).join(' | ')}`, rules };
}

/** The cell's region when the two versions (each only the rules met there) decide some request of it differently. */
function compareCell(oldPolicy: CheckedPolicy, newPolicy: CheckedPolicy, { caller, method, p }: { caller: CallerClass; method: string; p: PathClass }, stripped: string[]): Region | null {
  const base: CaseRequest = { method, path: p.path, source: caller.id };
  const asOld = { ...newPolicy, mode: oldPolicy.mode };
  const so = signature(oldPolicy, base);
  const sn = signature(asOld, base);
  if (so?.text === sn?.text && !stripped.length && admits(oldPolicy, caller.trustDomain) === admits(newPolicy, caller.trustDomain)) return null;
  const conditional = [...(so?.rules ?? []), ...(sn?.rules ?? [])].filter((r) => r.when);
  const variants = [base, ...requestVariants(base, conditional, stripped)];
  const witness = variants.find((v) => !same(outcome(oldPolicy, v), outcome(asOld, v))) ?? null;
  // No witness: unchanged when the conditions cannot make a difference (headers stripped by one version only matter where it may allow).
  if (!witness && so && sn && (stripped.length ? so.text === 'deny' && sn.text === 'deny' : sameForAllConditions(method, so.rules, sn.rules))) return null;
  const shown = witness ?? base;
  return {
    callers: caller.label,
    method,
    paths: p.label,
    condition: conditionText(so?.rules ?? [], sn?.rules ?? []),
    old: decided(outcome(oldPolicy, shown)),
    new: decided(outcome(newPolicy, shown)),
    witness,
    cell: base,
  };
}

/** Every cell of the two versions (all caller, method and path classes): for tests, a change outside these would be a missed one. */
export function cellRequests(a: CheckedPolicy, b: CheckedPolicy): CaseRequest[] {
  const rules = [...a.rules, ...b.rules];
  const domains = new Set([ownDomain(a), ownDomain(b), ...a.federatesWith, ...b.federatesWith, ...rules.flatMap((r) => r.from ?? []).map((p) => p.trustDomain)]);
  let other = 'other.example';
  for (let n = 1; domains.has(other); n++) other = `other${n}.example`;
  const paths = pathClasses(rules);
  const methods = methodClasses(rules);
  return [...domains, other].flatMap((td) => callerClasses(rules, td)).flatMap((caller) =>
    methods.flatMap((method) => paths.map((p) => ({ method, path: p.path, source: caller.id }))));
}

/** The `when`s that are not the same in both versions here, or `true`. */
function conditionText(oldRules: CheckedRule[], newRules: CheckedRule[]): string {
  const text = (r: CheckedRule) => (r.when ? `${r.effect} '${r.id}' when ${printExpr(r.when)}` : '');
  const a = new Set(oldRules.map(text).filter(Boolean));
  const b = new Set(newRules.map(text).filter(Boolean));
  const differing = [...[...a].filter((x) => !b.has(x)).map((x) => `OLD ${x}`), ...[...b].filter((x) => !a.has(x)).map((x) => `NEW ${x}`)];
  return differing.length ? differing.join('; ') : 'true';
}

/** The witness with the fingerprint a verified caller sends (diff is about policy, not forgery). */
function outcome(policy: CheckedPolicy, req: CaseRequest): Outcome {
  const fingerprint = fingerprintClaims({ caller: req.source!, service: policy.service, method: req.method, path: req.path });
  return decide(policy, { ...req, fingerprint });
}

function decided(o: Outcome): Decided {
  return { decision: o.decision, status: o.status, rule: o.rule, inject: o.decision === 'allow' ? o.upstreamHeaders ?? {} : {} };
}

/** A change is in the decision, the status (e.g. a switch to dry-run) or the injected headers; a renamed rule is none. */
const same = (a: Outcome, b: Outcome) => {
  const [x, y] = [decided(a), decided(b)];
  return x.decision === y.decision && x.status === y.status && JSON.stringify(x.inject) === JSON.stringify(y.inject);
};

/**
 * Requests like `base` that set what the conditions read to the constants they compare with:
 * each header, query parameter and claim a `when` names, set to each constant the
 * expressions contain (and a scope list holding them), one at a time and all together; and
 * the headers only one version strips.
 */
function requestVariants(base: CaseRequest, rules: CheckedRule[], stripped: string[]): CaseRequest[] {
  const reads = { headers: new Set<string>(stripped), query: new Set<string>(), claims: new Set<string>() };
  const constants = new Set<string>();
  const visit = (e: TExpr): void => {
    if (e.k === 'str') constants.add(e.v);
    if (e.k === 'lookup' && e.map !== 'params') reads[e.map === 'headers' ? 'headers' : 'query'].add(e.key);
    if (e.k === 'claim' && e.path.length === 1) reads.claims.add(e.path[0]);
  };
  for (const r of rules) if (r.when) eachExpr(r.when, visit);
  const values = [...constants, ''];
  const out: CaseRequest[] = [];
  const users = [undefined, { sub: 'someone', scope: [...constants].join(' ') }, ...values.map((v) => ({ sub: v, scope: v, ...Object.fromEntries([...reads.claims].map((c) => [c, v])) }))];
  for (const user of users) {
    out.push({ ...base, user });
    for (const v of values) {
      out.push({ ...base, user, headers: Object.fromEntries([...reads.headers].map((h) => [h, v])), path: withQuery(base.path, reads.query, v) });
      for (const h of reads.headers) out.push({ ...base, user, headers: { [h]: v } });
    }
  }
  return out;
}

function withQuery(path: string, keys: Set<string>, value: string): string {
  if (!keys.size) return path;
  return `${path}?${[...keys].map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(value)}`).join('&')}`;
}
