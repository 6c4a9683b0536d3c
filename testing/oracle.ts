/**
 * A reference interpreter of the decision semantics (compiler/frontend/ast.ts; docs/policy.md,
 * "Decisions" and "Fingerprints") over a `CheckedPolicy`, written straight from the spec and
 * kept deliberately naive (a loop over rules, a list of fingerprint checks, an unbounded set
 * of accepted jtis). It checks that the example case files say what the spec says,
 * independently of the compiled filter; the back end can use it for differential tests.
 */
import type { CheckedPolicy, CheckedRule, PathTemplate, PrincipalPattern, TExpr } from '../compiler/frontend/ast.ts';

export interface CaseRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  source?: string;
  user?: Record<string, unknown>;
  /** The fingerprint claims jwt_authn verified (its `fingerprint` metadata); undefined: none. */
  fingerprint?: unknown;
}
export interface Outcome {
  decision: 'allow' | 'deny' | 'unauthenticated';
  status: number;
  rule: string | null;
  /** Only the reasons the spec names: why the caller or its fingerprint was refused, or an injection. */
  reason?: string;
  upstreamHeaders?: Record<string, string>;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** Envoy's safe normalization; null when the path must be rejected with 400. */
export function normalizePath(raw: string): string | null {
  if (raw.includes('#') || raw.includes('\0')) return null;
  const path = raw.split('?')[0];
  if (!path.startsWith('/') || path.includes('\\')) return null; // a raw backslash too, as Envoy's REJECT_REQUEST
  const decoded = decodePercents(path);
  if (decoded === null) return null;
  // Dot segments first, over a stack that still holds empty segments (RFC 3986 order, as
  // Envoy and runtime/path.ts do: `/x//../a` is `/x/a`), then merged slashes.
  const stack: string[] = [];
  const segments = decoded.split('/').slice(1);
  for (const seg of segments) {
    if (seg === '..') stack.pop();
    else if (seg !== '.') stack.push(seg);
  }
  const out = stack.filter((s) => s !== '');
  // Merged slashes and resolved dots keep a trailing slash as an empty last segment.
  const last = segments[segments.length - 1];
  const trailing = (last === '' || last === '.' || last === '..') && out.length > 0;
  return `/${out.join('/')}${trailing ? '/' : ''}`;
}

/** Percent-encoded unreserved characters decoded, others upper-cased; null for a bad escape or an encoded '/', '\\' or NUL. */
function decodePercents(path: string): string | null {
  if (!path.includes('%')) return path;
  let decoded = '';
  for (let i = 0; i < path.length; i++) {
    if (path[i] !== '%') {
      decoded += path[i];
      continue;
    }
    const hex = path.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return null;
    const c = String.fromCharCode(parseInt(hex, 16));
    if (c === '/' || c === '\\' || c === '\0') return null;
    decoded += UNRESERVED.test(c) ? c : `%${hex.toUpperCase()}`;
    i += 2;
  }
  return decoded;
}

/**
 * A workload SPIFFE ID per SPIFFE-ID.md: lowercase scheme, a trust domain of [a-z0-9._-], a
 * path of non-empty segments of [A-Za-z0-9._-] other than `.` and `..`; the trust domain, or null.
 */
function callerTrustDomain(id: string): string | null {
  const m = /^spiffe:\/\/([a-z0-9._-]{1,255})((?:\/[A-Za-z0-9._-]+)+)$/.exec(id);
  if (!m || Buffer.byteLength(id, 'utf8') > 2048) return null;
  return m[2].split('/').slice(1).some((s) => s === '.' || s === '..') ? null : m[1];
}

const trustDomainOfService = (service: string): string => service.slice('spiffe://'.length).split('/')[0];

/** An admitted caller's trust domain and path segments, as principal patterns see them. */
interface CallerParts { domain: string; segs: string[] }

function matchPrincipal(p: PrincipalPattern, caller: CallerParts): boolean {
  if (caller.domain !== p.trustDomain) return false;
  const { segs } = caller;
  if (p.rest ? segs.length <= p.segments.length : segs.length !== p.segments.length) return false;
  return p.segments.every((s, i) => s === '*' || s === segs[i]);
}

function matchTemplate(t: PathTemplate, path: string): Record<string, string> | null {
  const segs = path === '/' ? [] : path.slice(1).split('/');
  if (t.rest ? segs.length <= t.segments.length : segs.length !== t.segments.length) return null;
  const params: Record<string, string> = {};
  for (const [i, s] of t.segments.entries()) {
    if (s.kind === 'literal' && s.value !== segs[i]) return null;
    if (s.kind === 'param') {
      if (segs[i] === '') return null;
      params[s.name] = segs[i];
    }
  }
  return t.rest && segs.slice(t.segments.length).some((s) => s === '') ? null : params;
}

interface Ctx {
  method: string;
  path: string;
  host: string;
  headers: Record<string, string>;
  query: Record<string, string>;
  params: Record<string, string>;
  source: string;
  /** `source` split once per request (every principal pattern of every rule looks at it). */
  caller: CallerParts;
  /** The caller belongs to the service's own trust domain. */
  local: boolean;
  user: Record<string, unknown> | undefined;
}
const ERR = Symbol('evaluation error');
type V = unknown;

const same = (a: V, b: V) => typeof a === typeof b && (typeof a === 'string' || typeof a === 'number' || typeof a === 'boolean');

function evaluate(e: TExpr, c: Ctx): V {
  switch (e.k) {
    case 'str': case 'num': case 'bool': return e.v;
    case 'list': {
      const items = e.items.map((i) => evaluate(i, c));
      return items.includes(ERR) ? ERR : items;
    }
    case 'attr':
      switch (e.name) {
        case 'request.method': return c.method;
        case 'request.path': return c.path;
        case 'request.host': return c.host;
        case 'source.principal': return c.source;
        case 'user.sub': return typeof c.user?.sub === 'string' ? c.user.sub : ERR;
        case 'user.scopes':
          if (!c.user) return ERR;
          if (typeof c.user.scope === 'string') return c.user.scope.split(' ').filter(Boolean);
          return Array.isArray(c.user.scp) ? c.user.scp : [];
      }
      return ERR;
    case 'map': return c[e.map];
    case 'lookup': return c[e.map][e.key] ?? '';
    case 'claim': {
      let v: V = c.user ?? ERR;
      for (const key of e.path) v = v !== ERR && isMap(v) && key in v ? v[key] : ERR;
      return v;
    }
    case 'not': {
      const v = evaluate(e.e, c);
      return typeof v === 'boolean' ? !v : ERR;
    }
    case 'and': case 'or': {
      const l = evaluate(e.l, c);
      if (typeof l !== 'boolean') return ERR;
      if (l === (e.k === 'or')) return l;
      const r = evaluate(e.r, c);
      return typeof r === 'boolean' ? r : ERR;
    }
    case 'cmp': {
      const l = evaluate(e.l, c);
      const r = evaluate(e.r, c);
      if (!same(l, r)) return ERR;
      if (e.op === '==') return l === r;
      if (e.op === '!=') return l !== r;
      if (typeof l === 'boolean') return ERR;
      const [a, b] = typeof l === 'string' ? [Buffer.from(l as string), Buffer.from(r as string)] : [l as number, r as number];
      const cmp = typeof l === 'string' ? Buffer.compare(a as Buffer, b as Buffer) : (a as number) - (b as number);
      return { '<': cmp < 0, '<=': cmp <= 0, '>': cmp > 0, '>=': cmp >= 0 }[e.op];
    }
    case 'in': {
      const x = evaluate(e.elem, c);
      const coll = evaluate(e.coll, c);
      if (x === ERR || coll === ERR) return ERR;
      if (Array.isArray(coll)) return coll.some((y) => same(x, y) && x === y);
      if (isMap(coll)) return typeof x === 'string' ? Object.hasOwn(coll, x) : ERR;
      return ERR;
    }
    case 'call': {
      const s = evaluate(e.target, c);
      const a = evaluate(e.arg, c);
      if (typeof s !== 'string' || typeof a !== 'string') return ERR;
      return e.fn === 'startsWith' ? s.startsWith(a) : e.fn === 'endsWith' ? s.endsWith(a) : s.includes(a);
    }
    case 'size': {
      const v = evaluate(e.e, c);
      if (typeof v === 'string') return Buffer.byteLength(v);
      if (Array.isArray(v)) return v.length;
      return isMap(v) ? Object.keys(v).length : ERR;
    }
  }
}

const isMap = (v: V): v is Record<string, V> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Does the rule's `from` admit the caller? No `from`: any caller of the service's own trust domain (federated callers need a `from`). */
const callerMatches = (rule: CheckedRule, c: Ctx): boolean => (rule.from ? rule.from.some((p) => matchPrincipal(p, c.caller)) : c.local);

/** Does one `to` entry match the request? Fills `params` from its first matching template. */
function entryMatches(m: NonNullable<CheckedRule['to']>[number], c: Ctx): boolean {
  if (m.methods && !m.methods.includes(c.method)) return false;
  if (!m.paths) return true;
  for (const t of m.paths) {
    const params = matchTemplate(t, c.path);
    if (params) return (c.params = params), true;
  }
  return false;
}

/** Whether a rule applies; fills `params` from the first matching template. */
function applies(rule: CheckedRule, c: Ctx): boolean {
  if (!callerMatches(rule, c)) return false;
  if (rule.to && !rule.to.some((m) => entryMatches(m, c))) return false;
  if (!rule.when) return true;
  const v = evaluate(rule.when, c);
  return typeof v === 'boolean' ? v : rule.effect === 'deny';
}

/** What each part of a rule says about one request (`palisade test --coverage`). */
export interface RuleTrace {
  /** `from` admits the caller. */
  caller: boolean;
  /** Per `to` entry (none when the rule has no `to`): it matches the request, for a caller `from` admits. */
  to: boolean[];
  /** The `when` value when `from` and `to` matched and there is a `when`: true, false or 'error'; else null. */
  when: boolean | 'error' | null;
}

/** Per rule, how it met `req`; null when the request is refused before any rule (400, 401). */
export function traceRules(policy: CheckedPolicy, req: CaseRequest): RuleTrace[] | null {
  const base = ruleContext(policy, req);
  if (!base) return null;
  return policy.rules.map((rule) => {
    const c: Ctx = { ...base, params: {} };
    const caller = callerMatches(rule, c);
    // Every entry is tried (coverage asks about each, on a copy); `when` sees the params of the first hit, as at run time.
    const to = (rule.to ?? []).map((m) => caller && entryMatches(m, { ...c }));
    const reached = caller && (rule.to === null || rule.to.some((m) => entryMatches(m, c)));
    if (!reached || !rule.when) return { caller, to, when: null };
    const v = evaluate(rule.when, c);
    return { caller, to, when: typeof v === 'boolean' ? v : 'error' };
  });
}

/** The request as rules see it, or null when it is refused before them (bad path, no or foreign caller). */
function ruleContext(policy: CheckedPolicy, req: CaseRequest): Omit<Ctx, 'params'> | null {
  const path = normalizePath(req.path);
  if (path === null || !req.source) return null;
  const domain = callerTrustDomain(req.source);
  if (domain === null) return null;
  const local = domain === trustDomainOfService(policy.service);
  if (!local && !policy.federatesWith.includes(domain)) return null;
  return requestContext(req, req.source, domain, path, local);
}

/** What rules see of a request admitted past path and caller checks (`path` normalized, `source` a valid SPIFFE ID of `domain`). */
function requestContext(req: CaseRequest, source: string, domain: string, path: string, local: boolean): Ctx {
  const caller = { domain, segs: source.slice('spiffe://'.length + domain.length + 1).split('/') };
  const headers = Object.fromEntries(Object.entries(req.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  const query = Object.fromEntries(new URLSearchParams(req.path.split('?')[1] ?? ''));
  return { method: req.method, path, host: headers.host ?? '', headers, query, params: {}, source, caller, local, user: req.user };
}

/** Clock skew and fingerprint lifetime, in seconds (docs/policy.md, "Fingerprints"). */
const SKEW = 5;
const LIFETIME = 30;

/**
 * Why the request's fingerprint is refused, in the order of the table in docs/policy.md, "Fingerprints", or null when
 * it is accepted; an accepted fingerprint's jti joins `accepted`. The replay store's bound
 * (`fingerprint_replay_full`) is a capacity limit of the filter, not modelled here.
 */
function refuseFingerprint(policy: CheckedPolicy, req: CaseRequest, accepted: Set<string>): string | null {
  const fp = req.fingerprint;
  if (fp === undefined) return 'fingerprint_missing';
  if (!isMap(fp)) return 'fingerprint_malformed';
  const { iss, sub, aud, htm, htu, jti, iat, exp } = fp;
  const strings = [iss, sub, aud, htm, htu, jti].every((v) => typeof v === 'string');
  if (!strings || typeof iat !== 'number' || typeof exp !== 'number') return 'fingerprint_malformed';
  const now = Date.now() / 1000;
  if (sub !== req.source) return 'fingerprint_sub';
  if (iss !== sub) return 'fingerprint_iss';
  if (aud !== policy.service) return 'fingerprint_aud';
  if (htm !== req.method) return 'fingerprint_htm';
  if (htu !== req.path.split('?')[0]) return 'fingerprint_htu';
  if (now - exp > SKEW) return 'fingerprint_exp';
  if (iat - now > SKEW || now - iat > LIFETIME + SKEW) return 'fingerprint_iat';
  if (exp - iat > LIFETIME) return 'fingerprint_lifetime';
  if (accepted.has(jti as string)) return 'fingerprint_replay';
  accepted.add(jti as string);
  return null;
}

/** Every header name any rule may inject: stripped from every request an allow rule admits. */
const injectables = new WeakMap<CheckedPolicy, Set<string>>();
function injectable(policy: CheckedPolicy): Set<string> {
  let names = injectables.get(policy);
  if (!names) injectables.set(policy, (names = new Set(policy.rules.flatMap((r) => r.inject.map((i) => i.header)))));
  return names;
}

function reply(policy: CheckedPolicy, decision: Outcome['decision'], status: number, rule: string | null = null): Outcome {
  return { decision, status: policy.mode === 'dry-run' ? 200 : status, rule };
}

/**
 * The decision for `req`. `accepted` is what the filter remembers between requests: the jti
 * of every fingerprint it accepted (share one set across the requests of one case file run).
 */
export function decide(policy: CheckedPolicy, req: CaseRequest, accepted = new Set<string>()): Outcome {
  const path = normalizePath(req.path);
  if (path === null) return reply(policy, 'deny', 400);
  if (!req.source) return reply(policy, 'unauthenticated', 401);
  const domain = callerTrustDomain(req.source);
  if (domain === null) return { ...reply(policy, 'unauthenticated', 401), reason: 'invalid_principal' };
  const local = domain === trustDomainOfService(policy.service);
  if (!local && !policy.federatesWith.includes(domain)) return { ...reply(policy, 'unauthenticated', 401), reason: 'foreign_trust_domain' };
  const refused = refuseFingerprint(policy, req, accepted);
  if (refused) return { ...reply(policy, 'unauthenticated', 401), reason: refused };
  // One context for the request; each rule starts with no params (applies fills them from its own match).
  const c = requestContext(req, req.source, domain, path, local);
  for (const rule of policy.rules) {
    c.params = {};
    if (rule.effect === 'deny' && applies(rule, c)) return reply(policy, 'deny', 403, rule.id);
  }
  for (const rule of policy.rules) {
    c.params = {};
    if (rule.effect !== 'allow' || !applies(rule, c)) continue;
    // Every name any rule may inject is stripped from every request, then this rule's are set.
    const strip = injectable(policy);
    const upstreamHeaders = Object.fromEntries(Object.entries(c.headers).filter(([k]) => !strip.has(k)));
    for (const i of rule.inject) {
      const v = evaluate(i.value, c);
      // A value that is not an RFC 9110 field value is never set: the request fails closed.
      if (typeof v === 'string' && /[\0-\x08\x0a-\x1f\x7f]/.test(v)) return { ...reply(policy, 'deny', 403, rule.id), reason: 'inject_invalid_value' };
      if (typeof v === 'string') upstreamHeaders[i.header] = v;
    }
    return { ...reply(policy, 'allow', 200, rule.id), upstreamHeaders };
  }
  return reply(policy, 'deny', 403);
}
