/**
 * Policy case files (the format `palisade test` runs, issue 2 item 9): parsing with
 * file:line:col errors, and running each case through a filter in the strict host the way
 * Envoy would present the request: `source` as the peer certificate's URI SAN,
 * `user` as the jwt_authn `user` dynamic metadata. The decision comes from the filter's
 * decision log line (DEVELOPERS.md); the status is what the caller receives.
 */
import path from 'node:path';
import { parseSource, spanAt, type Source } from '../../compiler/source.ts';
import type { Filter, Outcome } from './filter.ts';

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
  };
  expect: {
    decision: 'allow' | 'deny' | 'unauthenticated';
    status?: number;
    upstreamHeaders?: Record<string, string>;
    /** The deciding rule id (null: none). */
    rule?: string | null;
  };
  /** `file:line:col` of the case, for reports. */
  at: string;
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

/** The decision record a policy filter logs for every request. */
export interface Decision {
  decision: string;
  status: number;
  rule: string | null;
  mode: string;
  reason: string;
}

export interface CaseResult {
  case: TestCase;
  passed: boolean;
  /** One line per mismatch: `status: expected 403, got 200`. */
  failures: string[];
  decision: Decision | null;
  outcome: Outcome;
}

export const DECISION_PREFIX = 'palisade.decision ';

export function decisionOf(outcome: Pick<Outcome, 'logs'>): Decision | null {
  const line = outcome.logs.find((l) => l.level === 'info' && l.message.startsWith(DECISION_PREFIX));
  if (!line) return null;
  try {
    return JSON.parse(line.message.slice(DECISION_PREFIX.length)) as Decision;
  } catch {
    return null;
  }
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
  const cases = (root.cases as unknown[]).map((c, k) => parseCase(source, c, `/cases/${k}`, fail));
  const names = new Map<string, number>();
  cases.forEach((c, k) => {
    if (names.has(c.name)) fail(`/cases/${k}/name`, `duplicate case name "${c.name}" (also case ${names.get(c.name)})`);
    names.set(c.name, k);
  });
  return { file, policy: path.resolve(path.dirname(file), root.policy as string), cases };
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
  only(req, `${at}/request`, ['method', 'path', 'authority', 'headers', 'body', 'source', 'user'], fail);
  if (typeof req.method !== 'string' || !/^[A-Za-z]+$/.test(req.method)) fail(`${at}/request${req.method === undefined ? '' : '/method'}`, '"method" must be an HTTP method name');
  if (typeof req.path !== 'string' || !req.path.startsWith('/')) fail(`${at}/request${req.path === undefined ? '' : '/path'}`, '"path" must be a string starting with "/"');
  for (const key of ['authority', 'body', 'source'] as const) {
    if (req[key] !== undefined && typeof req[key] !== 'string') fail(`${at}/request/${key}`, `"${key}" must be a string`);
  }
  if (req.headers !== undefined) {
    const headers = strings(req.headers, `${at}/request/headers`, '"headers"', fail);
    for (const name of Object.keys(headers)) if (name.startsWith(':')) fail(`${at}/request/headers/${name}`, 'pseudo-headers come from "method" and "path"');
  }
  if (req.user !== undefined) object(req.user, `${at}/request/user`, '"user" must be an object of claims', fail);
  const exp = object(c.expect, c.expect === undefined ? at : `${at}/expect`, '"expect" must be an object with "decision"', fail);
  only(exp, `${at}/expect`, ['decision', 'status', 'upstreamHeaders', 'rule'], fail);
  if (!DECISIONS.includes(exp.decision as string)) fail(`${at}/expect${exp.decision === undefined ? '' : '/decision'}`, `"decision" must be one of ${DECISIONS.join(', ')}`);
  if (exp.status !== undefined && (!Number.isInteger(exp.status) || (exp.status as number) < 100 || (exp.status as number) > 599)) {
    fail(`${at}/expect/status`, '"status" must be an HTTP status code');
  }
  if (exp.upstreamHeaders !== undefined) strings(exp.upstreamHeaders, `${at}/expect/upstreamHeaders`, '"upstreamHeaders"', fail);
  if (exp.rule !== undefined && exp.rule !== null && typeof exp.rule !== 'string') fail(`${at}/expect/rule`, '"rule" must be a rule id or null');
  const span = spanAt(source, at);
  return { ...(c as Omit<TestCase, 'at'>), at: `${span.file}:${span.line}:${span.col}` };
}

/** Runs one case through `filter`; never throws for a failing expectation. */
export async function runCase(filter: Filter, c: TestCase): Promise<CaseResult> {
  const { request, expect } = c;
  const outcome = await filter.handleRequest({
    method: request.method,
    path: request.path,
    authority: request.authority ?? 'palisade-test',
    headers: request.headers,
    body: request.body,
    source: request.source !== undefined ? { principal: request.source } : undefined,
    metadata: request.user !== undefined ? { 'envoy.filters.http.jwt_authn': { user: request.user } } : undefined,
  });
  const decision = decisionOf(outcome);
  const failures: string[] = [];
  const check = (what: string, expected: unknown, actual: unknown) => {
    if (expected !== actual) failures.push(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  };
  check('decision', expect.decision, decision?.decision ?? '(no decision logged)');
  if (expect.status !== undefined) check('status', expect.status, outcome.kind === 'reset' ? '(stream reset)' : outcome.status);
  if (expect.rule !== undefined) check('rule', expect.rule, decision ? decision.rule : '(no decision logged)');
  for (const [name, value] of Object.entries(expect.upstreamHeaders ?? {})) {
    const actual = outcome.upstreamRequest?.headers.filter(([k]) => k === name.toLowerCase()).map(([, v]) => v);
    check(`upstream header ${name}`, value, !outcome.upstreamRequest ? '(not forwarded)' : actual!.length ? actual!.join(', ') : '(absent)');
  }
  return { case: c, passed: failures.length === 0, failures, decision, outcome };
}

export async function runCases(filter: Filter, cases: TestCase[]): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const c of cases) results.push(await runCase(filter, c));
  return results;
}

const show = (v: unknown): string => (typeof v === 'string' && v.startsWith('(') ? v : JSON.stringify(v));
