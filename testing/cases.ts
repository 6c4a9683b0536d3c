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
import { FilterLoadError, type Filter, type FilterRequest, type Outcome } from '../host/filter.ts';
import type { FilterSet } from './filter-set.ts';
import { JWT_AUTHN, fingerprintClaims } from './fingerprint.ts';
import { REASONS, decisionOf, type Decision } from './decision-line.ts';
import { didYouMean } from '../compiler/frontend/suggest.ts';

export interface CaseRequest {
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
}

export interface TestCase {
  name: string;
  request: CaseRequest;
  expect: {
    decision: 'allow' | 'deny' | 'unauthenticated';
    status?: number;
    upstreamHeaders?: Record<string, string>;
    /** The deciding rule id (null: none). */
    rule?: string | null;
    /** The decision record's `reason`, e.g. `fingerprint_replay`. */
    reason?: string;
  };
  /** The plugin configuration the filter runs with for this case (JSON object); omitted: none. */
  config?: Record<string, unknown>;
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

/** A case file (or request) that cannot be used: one `file:line:col: message` per problem, all of them, in file order. */
export class CaseFileError extends Error {
  override name = 'CaseFileError';
  readonly problems: string[];
  constructor(problems: { line: number; col: number; text: string }[]) {
    const sorted = [...problems].sort((a, b) => a.line - b.line || a.col - b.col).map((p) => p.text);
    super(sorted.join('\n'));
    this.problems = sorted;
  }
}

export interface CaseResult {
  case: TestCase;
  passed: boolean;
  /** One line per mismatch: `status: expected 403, got 200`. */
  failures: string[];
  decision: Decision | null;
  outcome: Outcome;
}

export const DECISIONS = ['allow', 'deny', 'unauthenticated'];
/** The members each level of a case file may have (schema/cases.schema.json says the same; a test keeps them equal). */
export const FIELDS = {
  file: ['$schema', 'policy', 'cases'],
  case: ['name', 'request', 'expect', 'config'],
  request: ['method', 'path', 'authority', 'headers', 'body', 'source', 'user', 'fingerprint'],
  expect: ['decision', 'status', 'upstreamHeaders', 'rule', 'reason'],
};

/** Records a problem at a JSON pointer of the document; `problems` holds them all so far. */
type Report = ((pointer: string, message: string) => void) & { problems: unknown[] };

/** Parses JSON with positions, and a reporter that collects every problem as `file:line:col: message (at pointer)`. */
function open(file: string, text: string): { source: Source; report: Report; problems: ConstructorParameters<typeof CaseFileError>[0] } {
  const { source, diagnostics } = parseSource(file, text);
  if (!source) throw new CaseFileError(diagnostics.map(({ span, message }) => ({ ...span, text: `${span.file}:${span.line}:${span.col}: ${message}` })));
  const problems: ConstructorParameters<typeof CaseFileError>[0] = [];
  const report: Report = Object.assign((pointer: string, message: string) => {
    const span = spanAt(source, pointer);
    problems.push({ ...span, text: `${span.file}:${span.line}:${span.col}: ${message}${pointer ? ` (at ${pointer})` : ''}` });
  }, { problems });
  return { source, report, problems };
}

/** Every problem of the file at once (CaseFileError), or the cases. */
export function parseCaseFile(file: string, text: string): CaseFile {
  const { source, report, problems } = open(file, text);
  const root = object(source.value, '', 'a case file must be a JSON object', report);
  if (!root) throw new CaseFileError(problems);
  only(root, '', FIELDS.file, report);
  const policyOk = typeof root.policy === 'string' && root.policy !== '';
  if (!policyOk) report(root.policy === undefined ? '' : '/policy', '"policy" must name the policy file (relative to this case file)');
  const policy = path.resolve(path.dirname(file), policyOk ? (root.policy as string) : '');
  const service = policyOk ? policyService(policy) : undefined;
  const cases: TestCase[] = [];
  if (!Array.isArray(root.cases)) report(root.cases === undefined ? '' : '/cases', '"cases" must be an array of cases');
  else if (root.cases.length === 0) report('/cases', '"cases" is empty: a case file must test something');
  else {
    const names = new Map<string, number>();
    root.cases.forEach((value, k) => {
      const c = parseCase(source, value, `/cases/${k}`, report);
      if (!c) return;
      if (names.has(c.name)) report(`/cases/${k}/name`, `duplicate case name "${c.name}" (also case ${names.get(c.name)})`);
      names.set(c.name, k);
      cases.push({ ...c, service });
    });
  }
  if (problems.length) throw new CaseFileError(problems);
  return { file, policy, cases };
}

/**
 * One request in the case-file `request` format, given as JSON text (`palisade eval`);
 * `label` names it in messages (a file name, or `--request`).
 */
export function parseRequest(label: string, text: string): CaseRequest {
  const { source, report, problems } = open(label, text);
  const request = requestOf(source.value, '', report);
  if (problems.length || !request) throw new CaseFileError(problems);
  return request;
}

/** The policy file's `service`, or undefined (unreadable: reported when a case needs it). */
export function policyService(policy: string): string | undefined {
  try {
    const service = (JSON.parse(readFileSync(policy, 'utf8')) as { service?: unknown }).service;
    return typeof service === 'string' ? service : undefined;
  } catch {
    return undefined;
  }
}

function object(value: unknown, pointer: string, message: string, report: Report): Record<string, unknown> | undefined {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  report(pointer, message);
  return undefined;
}

function only(value: Record<string, unknown>, pointer: string, allowed: string[], report: Report): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) report(`${pointer}/${key}`, `unknown field "${key}" (expected ${allowed.map((a) => `"${a}"`).join(', ')})`);
  }
}

function strings(value: unknown, pointer: string, what: string, report: Report): Record<string, string> | undefined {
  const map = object(value, pointer, `${what} must be an object of strings`, report);
  if (!map) return undefined;
  const bad = Object.entries(map).filter(([, v]) => typeof v !== 'string');
  for (const [k] of bad) report(`${pointer}/${k}`, `${what} values must be strings`);
  return bad.length ? undefined : (map as Record<string, string>);
}

/** A case without its file-level context (`service`), or undefined after reporting why not. */
function parseCase(source: Source, value: unknown, at: string, report: Report): Omit<TestCase, 'service'> | undefined {
  const c = object(value, at, 'a case must be an object with "name", "request" and "expect"', report);
  if (!c) return undefined;
  only(c, at, FIELDS.case, report);
  const nameOk = typeof c.name === 'string' && c.name !== '';
  if (!nameOk) report(c.name === undefined ? at : `${at}/name`, 'a case needs a "name" string');
  const request = requestOf(c.request, c.request === undefined ? at : `${at}/request`, report);
  const expect = expectOf(c.expect, c.expect === undefined ? at : `${at}/expect`, report);
  const configOk = c.config === undefined || object(c.config, `${at}/config`, '"config" must be the plugin configuration, a JSON object', report);
  if (!nameOk || !request || !expect || !configOk) return undefined;
  const span = spanAt(source, at);
  return { ...(c as Omit<TestCase, 'at' | 'service'>), request, expect, at: `${span.file}:${span.line}:${span.col}` };
}

function requestOf(value: unknown, at: string, report: Report): CaseRequest | undefined {
  const req = object(value, at, '"request" must be an object with "method" and "path"', report);
  if (!req) return undefined;
  const before = report.problems.length;
  only(req, at, FIELDS.request, report);
  if (typeof req.method !== 'string' || !/^[A-Za-z]+$/.test(req.method)) report(`${at}${req.method === undefined ? '' : '/method'}`, '"method" must be an HTTP method name');
  if (typeof req.path !== 'string' || !req.path.startsWith('/')) report(`${at}${req.path === undefined ? '' : '/path'}`, '"path" must be a string starting with "/"');
  for (const key of ['authority', 'body', 'source'] as const) {
    if (req[key] !== undefined && typeof req[key] !== 'string') report(`${at}/${key}`, `"${key}" must be a string`);
  }
  if (typeof req.source === 'string') {
    // A certificate's URI SAN can be any string, but a case file states a workload's identity:
    // a typo must not turn into a case that passes because the filter refuses a malformed ID.
    const id = parseSpiffe(req.source, false);
    if (!id.ok) report(`${at}/source`, `"source" must be a workload SPIFFE ID: ${id.message}`);
  }
  if (req.headers !== undefined) {
    const headers = strings(req.headers, `${at}/headers`, '"headers"', report);
    for (const name of Object.keys(headers ?? {})) if (name.startsWith(':')) report(`${at}/headers/${name}`, 'pseudo-headers come from "method" and "path"');
  }
  if (req.user !== undefined) object(req.user, `${at}/user`, '"user" must be an object of claims', report);
  if (req.fingerprint !== undefined && req.fingerprint !== null) {
    const fp = object(req.fingerprint, `${at}/fingerprint`, '"fingerprint" must be an object of claims or null', report) ?? {};
    for (const key of ['iat', 'exp']) {
      if (fp[key] !== undefined && fp[key] !== null && typeof fp[key] !== 'number') report(`${at}/fingerprint/${key}`, `"${key}" must be a number of seconds relative to now, or null`);
    }
  }
  return report.problems.length === before ? (req as unknown as CaseRequest) : undefined;
}

function expectOf(value: unknown, at: string, report: Report): TestCase['expect'] | undefined {
  const exp = object(value, at, '"expect" must be an object with "decision"', report);
  if (!exp) return undefined;
  const before = report.problems.length;
  only(exp, at, FIELDS.expect, report);
  if (!DECISIONS.includes(exp.decision as string)) report(`${at}${exp.decision === undefined ? '' : '/decision'}`, `"decision" must be one of ${DECISIONS.join(', ')}`);
  if (exp.status !== undefined && (!Number.isInteger(exp.status) || (exp.status as number) < 100 || (exp.status as number) > 599)) {
    report(`${at}/status`, '"status" must be an HTTP status code');
  }
  if (exp.upstreamHeaders !== undefined) strings(exp.upstreamHeaders, `${at}/upstreamHeaders`, '"upstreamHeaders"', report);
  if (exp.rule !== undefined && exp.rule !== null && typeof exp.rule !== 'string') report(`${at}/rule`, '"rule" must be a rule id or null');
  if (exp.reason !== undefined && !(typeof exp.reason === 'string' && Object.hasOwn(REASONS, exp.reason))) {
    report(`${at}/reason`, `"reason" must be a decision reason${typeof exp.reason === 'string' ? didYouMean(exp.reason, Object.keys(REASONS)) : ''} (docs/cases.md lists them)`);
  }
  return report.problems.length === before ? (exp as TestCase['expect']) : undefined;
}

/** What the filter did with one request: the outcome and its decision record. */
export interface Evaluation {
  outcome: Outcome;
  decision: Decision | null;
}

/**
 * Sends one request through `filter` as Envoy would present it (module comment). `service`
 * is the policy's (a fingerprint's `aud`); `run` scopes `jti` values. A string: why the
 * request's fingerprint cannot be built.
 */
export async function evaluate(filter: Filter, request: CaseRequest, service: string | undefined, run: string): Promise<Evaluation | string> {
  const jwtAuthn: Record<string, unknown> = {};
  if (request.user !== undefined) jwtAuthn.user = request.user;
  const fingerprint = caseFingerprint({ request, service }, run);
  if (typeof fingerprint === 'string') return fingerprint;
  if (fingerprint) jwtAuthn.fingerprint = fingerprint;
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
  return { outcome, decision: decisionOf(outcome) };
}

/** The value of each forwarded header named in `names` (lowercase), joined; undefined: not forwarded. */
export function forwardedHeaders(outcome: Outcome, names: Iterable<string>): Record<string, string> | undefined {
  if (!outcome.upstreamRequest) return undefined;
  const values: Record<string, string> = {};
  for (const name of names) {
    const found = outcome.upstreamRequest.headers.filter(([k]) => k === name.toLowerCase()).map(([, v]) => v);
    if (found.length) values[name] = found.join(', ');
  }
  return values;
}

/**
 * Runs one case through the filter `filters` gives for its plugin configuration; never
 * throws for a failing expectation or a configuration the filter refuses. `run` scopes the
 * case file's `jti` values to one run: a jti repeated within a run is a replay, the same
 * file run again is not.
 */
export async function runCase(filters: FilterSet, c: TestCase, run = randomBytes(6).toString('base64url')): Promise<CaseResult> {
  const failed = (failure: string): CaseResult => ({ case: c, passed: false, failures: [failure], decision: null, outcome: NO_OUTCOME });
  let filter: Filter;
  try {
    filter = await filters.for(c.config);
  } catch (err) {
    if (err instanceof FilterLoadError) return failed(`config: the filter refuses this plugin configuration: ${err.message}`);
    throw err;
  }
  const result = await evaluate(filter, c.request, c.service, run);
  if (typeof result === 'string') return failed(result);
  const { outcome, decision } = result;
  const { expect } = c;
  const failures: string[] = [];
  const check = (what: string, expected: unknown, actual: unknown) => {
    if (expected !== actual) failures.push(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  };
  check('decision', expect.decision, decision?.decision ?? '(no decision logged)');
  if (expect.status !== undefined) check('status', expect.status, outcome.kind === 'reset' ? '(stream reset)' : outcome.status);
  if (expect.rule !== undefined) check('rule', expect.rule, decision ? decision.rule : '(no decision logged)');
  if (expect.reason !== undefined) check('reason', expect.reason, decision ? decision.reason : '(no decision logged)');
  const expected = Object.keys(expect.upstreamHeaders ?? {});
  const forwarded = forwardedHeaders(outcome, expected);
  for (const name of expected) check(`upstream header ${name}`, expect.upstreamHeaders![name], !forwarded ? '(not forwarded)' : forwarded[name] ?? '(absent)');
  return { case: c, passed: failures.length === 0, failures, decision, outcome };
}

/** A case that never reached the filter. */
const NO_OUTCOME: Outcome = { kind: 'reply', status: 0, headers: [], body: new Uint8Array(), details: '', upstreamRequest: null, logs: [], filterState: new Map() };

export async function runCases(filters: FilterSet, cases: TestCase[]): Promise<CaseResult[]> {
  const run = randomBytes(6).toString('base64url');
  const results: CaseResult[] = [];
  for (const c of cases) results.push(await runCase(filters, c, run));
  return results;
}

/**
 * The claims jwt_authn would have verified for the case: synthesized for `source` (iss = sub
 * = source, aud = the policy's service, htm, htu, iat = now, exp = now + 30, a random jti),
 * adjusted by `request.fingerprint`; null: none; a string: why it cannot be built.
 */
export function caseFingerprint(c: Pick<TestCase, 'request' | 'service'>, run: string): Record<string, unknown> | null | string {
  const { service, request: { source, fingerprint, method, path: requestPath } } = c;
  if (fingerprint === null || (source === undefined && fingerprint === undefined)) return null;
  if (service === undefined) return 'fingerprint: the policy file\'s "service" could not be read (it is the fingerprint\'s aud)';
  const now = Math.floor(Date.now() / 1000);
  const claims = fingerprintClaims({ caller: source ?? '', service, method, path: requestPath, now });
  for (const [key, value] of Object.entries(fingerprint ?? {})) {
    if (value === null) delete claims[key];
    else if (key === 'iat' || key === 'exp') claims[key] = now + (value as number);
    else if (key === 'jti' && typeof value === 'string') claims.jti = `${run}.${value}`;
    else claims[key] = value;
  }
  return claims;
}

const show = (v: unknown): string => (typeof v === 'string' && v.startsWith('(') ? v : JSON.stringify(v));
