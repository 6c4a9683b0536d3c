/**
 * `palisade diff OLD NEW`: which requests two versions of a policy decide differently,
 * worked out on the checked policies, not by sampling.
 *
 * The request space is cut into cells that no rule of either version can tell apart:
 * - callers: per trust domain (every domain either version names, plus one neither does),
 *   the classes of SPIFFE IDs that match the same set of `from` patterns;
 * - methods: every method either version names, plus one neither does;
 * - paths: the classes of paths that match the same set of path templates.
 * Classes are found by walking segment positions and branching only on the literals the
 * patterns have there plus one fresh segment, so every class has exactly one representative
 * (its witness). Within a cell, `from` and `to` are fixed; what still varies is only the
 * `when` and `inject` expressions of the rules that match there. So a cell is:
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
 */
import type { CheckedPolicy, CheckedRule, PathTemplate, PrincipalPattern, TExpr } from '../compiler/frontend/ast.ts';
import { printExpr } from '../compiler/ir/ir.ts';
import { trustDomainOf } from '../compiler/frontend/spiffe.ts';
import { decide, traceRules, type CaseRequest, type Outcome } from '../testing/oracle.ts';
import { fingerprintClaims } from '../testing/fingerprint.ts';
import { sameForAllConditions } from './symbolic.ts';

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

type Segs = { segs: (string | null)[]; rest: boolean };
const FRESH = 'zz-other';

/**
 * One representative segment list per class of sequences (by the set of `patterns` that
 * match), at least `min` long. Sequences longer than every pattern's fixed part plus one
 * behave alike, so the walk stops there.
 */
export function segmentClasses(patterns: Segs[], min = 0): { segs: string[]; matches: number[] }[] {
  const maxLen = Math.max(0, ...patterns.map((p) => p.segs.length)) + 1;
  const out = new Map<string, { segs: string[]; matches: number[] }>();
  const walk = (prefix: string[], alive: number[]) => {
    const L = prefix.length;
    if (L >= min) {
      const matches = alive.filter((i) => (patterns[i].rest ? L > patterns[i].segs.length : L === patterns[i].segs.length));
      const key = matches.join(',');
      if (!out.has(key)) out.set(key, { segs: [...prefix], matches });
    }
    if (L >= maxLen) return;
    const next = alive.filter((i) => patterns[i].rest || patterns[i].segs.length > L);
    const literals = new Set(next.flatMap((i) => (L < patterns[i].segs.length && patterns[i].segs[L] !== null ? [patterns[i].segs[L] as string] : [])));
    for (const lit of literals) walk([...prefix, lit], next.filter((i) => L >= patterns[i].segs.length || patterns[i].segs[L] === null || patterns[i].segs[L] === lit));
    walk([...prefix, fresh(literals)], next.filter((i) => L >= patterns[i].segs.length || patterns[i].segs[L] === null));
  };
  walk([], patterns.map((_, i) => i));
  return [...out.values()];
}

function fresh(taken: Set<string>): string {
  let s = FRESH;
  for (let n = 1; taken.has(s); n++) s = `${FRESH}${n}`;
  return s;
}

const pathSegs = (t: PathTemplate): Segs => ({ segs: t.segments.map((s) => (s.kind === 'param' ? null : s.value)), rest: t.rest });
const callerSegs = (p: PrincipalPattern): Segs => ({ segs: p.segments.map((s) => (s === '*' ? null : s)), rest: p.rest });

interface CallerClass { id: string; label: string; trustDomain: string; patterns: Set<string> }
interface PathClass { path: string; label: string; templates: Set<string> }

function callerClasses(a: CheckedPolicy, b: CheckedPolicy): CallerClass[] {
  const patterns = [...a.rules, ...b.rules].flatMap((r) => r.from ?? []);
  const domains = new Set([trustDomainOf(a.service), trustDomainOf(b.service), ...a.federatesWith, ...b.federatesWith, ...patterns.map((p) => p.trustDomain)]);
  let other = 'other.example';
  for (let n = 1; domains.has(other); n++) other = `other${n}.example`;
  return [...domains, other].flatMap((td) => {
    const own = uniqueBy(patterns.filter((p) => p.trustDomain === td), (p) => p.text);
    return segmentClasses(own.map(callerSegs), 1).map((c) => ({
      id: `spiffe://${td}/${c.segs.join('/')}`,
      label: c.matches.length ? c.matches.map((i) => own[i].text).join(' & ') : `other callers of ${td}`,
      trustDomain: td,
      patterns: new Set(c.matches.map((i) => own[i].text)),
    }));
  });
}

function pathClasses(a: CheckedPolicy, b: CheckedPolicy): PathClass[] {
  const templates = uniqueBy([...a.rules, ...b.rules].flatMap((r) => (r.to ?? []).flatMap((m) => m.paths ?? [])), (t) => t.text);
  return segmentClasses(templates.map(pathSegs)).map((c) => ({
    path: `/${c.segs.join('/')}`,
    label: c.matches.length ? c.matches.map((i) => templates[i].text).join(' & ') : '(no template)',
    templates: new Set(c.matches.map((i) => templates[i].text)),
  }));
}

function methods(a: CheckedPolicy, b: CheckedPolicy): string[] {
  const named = new Set([...a.rules, ...b.rules].flatMap((r) => (r.to ?? []).flatMap((m) => m.methods ?? [])));
  let other = 'OTHER';
  for (let n = 0; named.has(other); n++) other = `OTHER${'X'.repeat(n + 1)}`;
  return [...named, other];
}

const uniqueBy = <T>(xs: T[], key: (x: T) => string): T[] => [...new Map(xs.map((x) => [key(x), x])).values()];

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

/** Every region where OLD and NEW decide differently. Both must protect the same service. */
export function diffPolicies(oldPolicy: CheckedPolicy, newPolicy: CheckedPolicy): Region[] {
  const regions: Region[] = [];
  // With the same admission (trust domains) and mode, equal signatures are the whole story.
  const admitAlike = oldPolicy.mode === newPolicy.mode && [...oldPolicy.federatesWith].sort().join() === [...newPolicy.federatesWith].sort().join();
  const reach = [reaches(oldPolicy), reaches(newPolicy)];
  for (const { caller, method, p } of cells(oldPolicy, newPolicy)) {
    const base: CaseRequest = { method, path: p.path, source: caller.id };
    // Most cells meet no rule of either version: nothing to compare there.
    if (admitAlike && !reach.some((x) => x(caller, method, p))) continue;
    const so = signature(oldPolicy, base);
    const sn = signature(newPolicy, base);
    if (so?.text === sn?.text && (admitAlike || same(outcome(oldPolicy, base), outcome(newPolicy, base)))) continue;
    const conditional = [...(so?.rules ?? []), ...(sn?.rules ?? [])].filter((r) => r.when);
    const variants = [base, ...requestVariants(base, conditional)];
    const witness = variants.find((v) => !same(outcome(oldPolicy, v), outcome(newPolicy, v))) ?? null;
    if (!witness && so && sn && sameForAllConditions(method, so.rules, sn.rules)) continue;
    const shown = witness ?? base;
    regions.push({
      callers: caller.label,
      method,
      paths: p.label,
      condition: conditionText(so?.rules ?? [], sn?.rules ?? []),
      old: decided(outcome(oldPolicy, shown)),
      new: decided(outcome(newPolicy, shown)),
      witness,
      cell: base,
    });
  }
  return regions;
}

/** Every cell of the two versions (module comment), as its representative's caller, method and path class. */
function cells(a: CheckedPolicy, b: CheckedPolicy) {
  const paths = pathClasses(a, b);
  const ms = methods(a, b);
  return callerClasses(a, b).flatMap((caller) => ms.flatMap((method) => paths.map((p) => ({ caller, method, p }))));
}

/** The representative request of every cell (for tests: a change outside these would be a missed one). */
export function cellRequests(a: CheckedPolicy, b: CheckedPolicy): CaseRequest[] {
  return cells(a, b).map(({ caller, method, p }) => ({ method, path: p.path, source: caller.id }));
}

/**
 * Does some rule's `from` and `to` match a cell (read off the classes' pattern sets)? The
 * `to` entries each path class meets are worked out once per class, so a cell costs the
 * few entries its path meets, not every rule.
 */
function reaches(policy: CheckedPolicy): (caller: CallerClass, method: string, p: PathClass) => boolean {
  const own = trustDomainOf(policy.service);
  const entries = policy.rules.flatMap((rule) => (rule.to ?? [{ methods: null, paths: null }]).map((m) => ({ rule, m })));
  const byPath = new Map<PathClass, typeof entries>();
  const admits = new Map<CallerClass, Set<CheckedRule>>();
  return (caller, method, p) => {
    let met = byPath.get(p);
    if (!met) byPath.set(p, (met = entries.filter(({ m }) => m.paths === null || m.paths.some((t) => p.templates.has(t.text)))));
    let rules = admits.get(caller);
    if (!rules) admits.set(caller, (rules = new Set(policy.rules.filter((r) => (r.from ? r.from.some((f) => caller.patterns.has(f.text)) : caller.trustDomain === own)))));
    return met.some(({ rule, m }) => rules.has(rule) && (m.methods === null || m.methods.includes(method)));
  };
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
 * expressions contain (and a scope list holding them), one at a time and all together.
 */
function requestVariants(base: CaseRequest, rules: CheckedRule[]): CaseRequest[] {
  const reads = { headers: new Set<string>(), query: new Set<string>(), claims: new Set<string>() };
  const constants = new Set<string>();
  const visit = (e: TExpr): void => {
    if (e.k === 'str') constants.add(e.v);
    if (e.k === 'lookup' && e.map !== 'params') reads[e.map === 'headers' ? 'headers' : 'query'].add(e.key);
    if (e.k === 'claim' && e.path.length === 1) reads.claims.add(e.path[0]);
    for (const child of Object.values(e)) {
      if (child && typeof child === 'object' && 'k' in child) visit(child as TExpr);
      if (Array.isArray(child)) child.forEach((c) => c && typeof c === 'object' && 'k' in c && visit(c as TExpr));
    }
  };
  for (const r of rules) if (r.when) visit(r.when);
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
