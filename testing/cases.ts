/**
 * Policy case files (the format `palisade test` runs, docs/policy.md "Case files"): parsing with
 * file:line:col errors, and running each case through a filter in the strict host the way
 * Envoy would present the request: `source` as the peer certificate's URI SAN,
 * `user` as the jwt_authn `user` dynamic metadata, and the fingerprint claims jwt_authn
 * would have verified as its `fingerprint` metadata (synthesized for `source`, or adjusted
 * by `fingerprint`; see docs/host.md). The decision comes from the filter's
 * decision log line (DEVELOPERS.md); the status is what the caller receives.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseSource, spanAt, type Source } from '../compiler/frontend/source.ts';
import { parseSpiffe } from '../compiler/frontend/spiffe.ts';
import type { Filter, FilterRequest, Outcome } from '../host/filter.ts';
import { JWT_AUTHN, fingerprintClaims } from './fingerprint.ts';
import { decisionOf, type Decision } from './decision-line.ts';

export interface TestCase {
  name: string;
  request: {
    method: string;
    path: string;
    authority?: string;
    headers?: Record<string, string>;
    body?: string;
    /** The caller's SPIFFE ID (client certificate URI SAN); omitted: no client certificate. */
    source?: string;
    /** Verified identity-context claims; omitted: none. */
    user?: Record<string, unknown>;
    /**
     * Fingerprint claims replacing the synthesized ones member by member (`null` removes a
     * claim; `iat`/`exp` are seconds relative to the run; `jti` is scoped to one run of the
     * file), or `null`: no fingerprint metadata at all.
     */
    fingerprint?: Record<string, unknown> | null;
  };
  expect: {
    decision: 'allow' | 'deny' | 'unauthenticated';
    status?: number;
    upstreamHeaders?: Record<string, string>;
    /** The deciding rule id (null: none). */
    rule?: string | null;
    /** The decision record's `reason`, e.g. `fingerprint_replay`. */
    reason?: string;
  };
  /** `file:line:col` of the case, for reports. */
  at: string;
  /** The policy's service SPIFFE ID (a fingerprint's `aud`); undefined when the policy file could not be read. */
  service?: string;
}

export interface CaseFile {
  file: string;
  /** The policy path resolved against the case file's directory. */
  policy: string;
  cases: TestCase[];
}

/** A case file that cannot be used; the message starts with `file:line:col: `. */
export class CaseFileError extends Error {
  override name = 'CaseFileError';
}


export interface CaseResult {
  case: TestCase;
  passed: boolean;
  /** One line per mismatch: `status: expected 403, got 200`. */
  failures: string[];
  decision: Decision | null;
  outcome: Outcome;
}


const DECISIONS = ['allow', 'deny', 'unauthenticated'];

export function parseCaseFile(file: string, text: string): CaseFile {
  const { source, diagnostics } = parseSource(file, text);
  if (!source) {
    const d = diagnostics[0];
    throw new CaseFileError(`${d.span.file}:${d.span.line}:${d.span.col}: ${d.message}`);
  }
  const fail = (pointer: string, message: string): never => {
    const span = spanAt(source, pointer);
    throw new CaseFileError(`${span.file}:${span.line}:${span.col}: ${message}${pointer ? ` (at ${pointer})` : ''}`);
  };
  const doc = source.value;
  const root = object(doc, '', 'a case file must be a JSON object', fail);
  only(root, '', ['policy', 'cases'], fail);
  if (typeof root.policy !== 'string' || root.policy === '') fail(root.policy === undefined ? '' : '/policy', '"policy" must name the policy file (relative to this case file)');
  if (!Array.isArray(root.cases)) fail(root.cases === undefined ? '' : '/cases', '"cases" must be an array of cases');
  const policy = path.resolve(path.dirname(file), root.policy as string);
  const service = policyService(policy);
  const cases = (root.cases as unknown[]).map((c, k) => ({ ...parseCase(source, c, `/cases/${k}`, fail), service }));
  const names = new Map<string, number>();
  cases.forEach((c, k) => {
    if (names.has(c.name)) fail(`/cases/${k}/name`, `duplicate case name "${c.name}" (also case ${names.get(c.name)})`);
    names.set(c.name, k);
  });
  return { file, policy, cases };
}

/** The policy file's `service`, or undefined (unreadable: reported when a case needs it). */
function policyService(policy: string): string | undefined {
  try {
    const service = (JSON.parse(readFileSync(policy, 'utf8')) as { service?: unknown }).service;
    return typeof service === 'string' ? service : undefined;
  } catch {
    return undefined;
  }
}

type Fail = (pointer: string, message: string) => never;

function object(value: unknown, pointer: string, message: string, fail: Fail): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(pointer, message);
  return value as Record<string, unknown>;
}

function only(value: Record<string, unknown>, pointer: string, allowed: string[], fail: Fail): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) fail(`${pointer}/${key}`, `unknown field "${key}" (expected ${allowed.map((a) => `"${a}"`).join(', ')})`);
  }
}

function strings(value: unknown, pointer: string, what: string, fail: Fail): Record<string, string> {
  const map = object(value, pointer, `${what} must be an object of strings`, fail);
  for (const [k, v] of Object.entries(map)) if (typeof v !== 'string') fail(`${pointer}/${k}`, `${what} values must be strings`);
  return map as Record<string, string>;
}

function parseCase(source: Source, value: unknown, at: string, fail: Fail): TestCase {
  const c = object(value, at, 'a case must be an object with "name", "request" and "expect"', fail);
  only(c, at, ['name', 'request', 'expect'], fail);
  if (typeof c.name !== 'string' || c.name === '') fail(c.name === undefined ? at : `${at}/name`, 'a case needs a "name" string');
  const req = object(c.request, c.request === undefined ? at : `${at}/request`, '"request" must be an object with "method" and "path"', fail);
  only(req, `${at}/request`, ['method', 'path', 'authority', 'headers', 'body', 'source', 'user', 'fingerprint'], fail);
  if (typeof req.method !== 'string' || !/^[A-Za-z]+$/.test(req.method)) fail(`${at}/request${req.method === undefined ? '' : '/method'}`, '"method" must be an HTTP method name');
  if (typeof req.path !== 'string' || !req.path.startsWith('/')) fail(`${at}/request${req.path === undefined ? '' : '/path'}`, '"path" must be a string starting with "/"');
  for (const key of ['authority', 'body', 'source'] as const) {
    if (req[key] !== undefined && typeof req[key] !== 'string') fail(`${at}/request/${key}`, `"${key}" must be a string`);
  }
  if (typeof req.source === 'string') {
    // A certificate's URI SAN can be any string, but a case file states a workload's identity:
    // a typo must not turn into a case that passes because the filter refuses a malformed ID.
    const id = parseSpiffe(req.source, false);
    if (!id.ok) fail(`${at}/request/source`, `"source" must be a workload SPIFFE ID: ${id.message}`);
  }
  if (req.headers !== undefined) {
    const headers = strings(req.headers, `${at}/request/headers`, '"headers"', fail);
    for (const name of Object.keys(headers)) if (name.startsWith(':')) fail(`${at}/request/headers/${name}`, 'pseudo-headers come from "method" and "path"');
  }
  if (req.user !== undefined) object(req.user, `${at}/request/user`, '"user" must be an object of claims', fail);
  if (req.fingerprint !== undefined && req.fingerprint !== null) {
    const fp = object(req.fingerprint, `${at}/request/fingerprint`, '"fingerprint" must be an object of claims or null', fail);
    for (const key of ['iat', 'exp']) {
      if (fp[key] !== undefined && fp[key] !== null && typeof fp[key] !== 'number') fail(`${at}/request/fingerprint/${key}`, `"${key}" must be a number of seconds relative to now, or null`);
    }
  }
  const exp = object(c.expect, c.expect === undefined ? at : `${at}/expect`, '"expect" must be an object with "decision"', fail);
  only(exp, `${at}/expect`, ['decision', 'status', 'upstreamHeaders', 'rule', 'reason'], fail);
  if (!DECISIONS.includes(exp.decision as string)) fail(`${at}/expect${exp.decision === undefined ? '' : '/decision'}`, `"decision" must be one of ${DECISIONS.join(', ')}`);
  if (exp.status !== undefined && (!Number.isInteger(exp.status) || (exp.status as number) < 100 || (exp.status as number) > 599)) {
    fail(`${at}/expect/status`, '"status" must be an HTTP status code');
  }
  if (exp.upstreamHeaders !== undefined) strings(exp.upstreamHeaders, `${at}/expect/upstreamHeaders`, '"upstreamHeaders"', fail);
  if (exp.rule !== undefined && exp.rule !== null && typeof exp.rule !== 'string') fail(`${at}/expect/rule`, '"rule" must be a rule id or null');
  if (exp.reason !== undefined && typeof exp.reason !== 'string') fail(`${at}/expect/reason`, '"reason" must be a string');
  const span = spanAt(source, at);
  return { ...(c as Omit<TestCase, 'at'>), at: `${span.file}:${span.line}:${span.col}` };
}

/**
 * Runs one case through `filter`; never throws for a failing expectation. `run` scopes the
 * case file's `jti` values to one run: a jti repeated within a run is a replay, the same
 * file run again is not.
 */
export async function runCase(filter: Filter, c: TestCase, run = randomBytes(6).toString('base64url')): Promise<CaseResult> {
  const { request, expect } = c;
  const failures: string[] = [];
  const jwtAuthn: Record<string, unknown> = {};
  if (request.user !== undefined) jwtAuthn.user = request.user;
  const fingerprint = caseFingerprint(c, run);
  if (typeof fingerprint === 'string') failures.push(fingerprint);
  else if (fingerprint) jwtAuthn.fingerprint = fingerprint;
  const filterRequest: FilterRequest = {
    method: request.method,
    path: request.path,
    authority: request.authority ?? 'palisade-test',
    headers: request.headers,
    body: request.body,
    source: request.source !== undefined ? { principal: request.source } : undefined,
    metadata: Object.keys(jwtAuthn).length ? { [JWT_AUTHN]: jwtAuthn } : undefined,
  };
  const outcome = await filter.handleRequest(filterRequest);
  const decision = decisionOf(outcome);
  const check = (what: string, expected: unknown, actual: unknown) => {
    if (expected !== actual) failures.push(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  };
  check('decision', expect.decision, decision?.decision ?? '(no decision logged)');
  if (expect.status !== undefined) check('status', expect.status, outcome.kind === 'reset' ? '(stream reset)' : outcome.status);
  if (expect.rule !== undefined) check('rule', expect.rule, decision ? decision.rule : '(no decision logged)');
  if (expect.reason !== undefined) check('reason', expect.reason, decision ? decision.reason : '(no decision logged)');
  for (const [name, value] of Object.entries(expect.upstreamHeaders ?? {})) {
    const actual = outcome.upstreamRequest?.headers.filter(([k]) => k === name.toLowerCase()).map(([, v]) => v);
    check(`upstream header ${name}`, value, !outcome.upstreamRequest ? '(not forwarded)' : actual!.length ? actual!.join(', ') : '(absent)');
  }
  return { case: c, passed: failures.length === 0, failures, decision, outcome };
}

export async function runCases(filter: Filter, cases: TestCase[]): Promise<CaseResult[]> {
  const run = randomBytes(6).toString('base64url');
  const results: CaseResult[] = [];
  for (const c of cases) results.push(await runCase(filter, c, run));
  return results;
}

/**
 * The claims jwt_authn would have verified for the case: synthesized for `source` (iss = sub
 * = source, aud = the policy's service, htm, htu, iat = now, exp = now + 30, a random jti),
 * adjusted by `request.fingerprint`; null: none; a string: why it cannot be built.
 */
export function caseFingerprint(c: TestCase, run: string): Record<string, unknown> | null | string {
  const { source, fingerprint, method, path: requestPath } = c.request;
  if (fingerprint === null || (source === undefined && fingerprint === undefined)) return null;
  if (c.service === undefined) return 'fingerprint: the policy file\'s "service" could not be read (it is the fingerprint\'s aud)';
  const now = Math.floor(Date.now() / 1000);
  const claims = fingerprintClaims({ caller: source ?? '', service: c.service, method, path: requestPath, now });
  for (const [key, value] of Object.entries(fingerprint ?? {})) {
    if (value === null) delete claims[key];
    else if (key === 'iat' || key === 'exp') claims[key] = now + (value as number);
    else if (key === 'jti' && typeof value === 'string') claims.jti = `${run}.${value}`;
    else claims[key] = value;
  }
  return claims;
}

const show = (v: unknown): string => (typeof v === 'string' && v.startsWith('(') ? v : JSON.stringify(v));
