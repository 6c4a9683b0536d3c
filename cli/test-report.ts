/**
 * What `palisade test` prints: text for people (failing cases with expected and actual,
 * `-v` every case, then exactly `N passed, M failed`), JSON for programs, JUnit XML for CI
 * systems that show test results (Jenkins, GitLab, GitHub Actions reporters).
 */
import type { CaseFile, CaseResult } from '../testing/cases.ts';
import type { PolicyCoverage } from '../testing/coverage.ts';

export const FORMATS = ['text', 'json', 'junit'] as const;
export type Format = (typeof FORMATS)[number];

export interface FileRun {
  file: CaseFile;
  results: CaseResult[];
}

export interface ReportOptions {
  verbose: boolean;
  coverage?: PolicyCoverage[];
}

export function render(format: Format, runs: FileRun[], opts: ReportOptions): string {
  if (format === 'json') return `${JSON.stringify(json(runs, opts), null, 2)}\n`;
  if (format === 'junit') return junit(runs);
  return text(runs, opts);
}

function counts(runs: FileRun[]): { passed: number; failed: number } {
  const all = runs.flatMap((r) => r.results);
  const passed = all.filter((r) => r.passed).length;
  return { passed, failed: all.length - passed };
}

/** One case as data: its expectations' verdict and what the filter decided. */
function caseJson(r: CaseResult) {
  const d = r.decision;
  return {
    name: r.case.name,
    at: r.case.at,
    passed: r.passed,
    failures: r.failures,
    decision: d?.decision ?? null,
    status: r.outcome.status || null,
    rule: d ? d.rule : null,
    reason: d?.reason ?? null,
    mode: d?.mode ?? null,
  };
}

function json(runs: FileRun[], opts: ReportOptions) {
  return {
    ...counts(runs),
    files: runs.map((r) => ({ file: r.file.file, policy: r.file.policy, cases: r.results.map(caseJson) })),
    ...(opts.coverage ? { coverage: opts.coverage } : {}),
  };
}

function text(runs: FileRun[], opts: ReportOptions): string {
  const out: string[] = [];
  for (const r of runs.flatMap((x) => x.results)) {
    if (!r.passed) out.push(failure(r));
    else if (opts.verbose) out.push(`PASS ${r.case.at} ${JSON.stringify(r.case.name)}: ${summary(r)}`);
  }
  const { passed, failed } = counts(runs);
  for (const c of opts.coverage ?? []) out.push(...coverageText(c));
  out.push(`${passed} passed, ${failed} failed`);
  return `${out.join('\n')}\n`;
}

/** `allow 200 (rule "read", reason allow_rule, mode enforce)` */
function summary(r: CaseResult): string {
  const d = r.decision;
  if (!d) return r.outcome.details === 'wasm_fail_stream' ? 'the filter trapped: 503 wasm_fail_stream' : 'no decision logged';
  return `${d.decision} ${r.outcome.status} (rule ${JSON.stringify(d.rule)}, reason ${d.reason}, mode ${d.mode})`;
}

function failure(r: CaseResult): string {
  const lines = [`FAIL ${r.case.at} ${JSON.stringify(r.case.name)}`, ...r.failures.map((f) => `  ${f}`)];
  if (r.decision || r.outcome.details === 'wasm_fail_stream') lines.push(`  (${summary(r)})`);
  return lines.join('\n');
}

function coverageText(c: PolicyCoverage): string[] {
  const to = c.rules.flatMap((r) => r.to);
  const whens = c.rules.flatMap((r) => (r.when ? [r.when] : []));
  const branches = whens.reduce((n, w) => n + (w.true ? 1 : 0) + (w.false ? 1 : 0), 0);
  return [
    `coverage ${c.policy}: ${c.rules.filter((r) => r.decided).length}/${c.rules.length} rules decided a case, ` +
      `${to.filter((t) => t.matched).length}/${to.length} \`to\` entries matched, ${branches}/${whens.length * 2} \`when\` branches taken`,
    ...c.uncovered.map((u) => `  ${u}`),
  ];
}

function junit(runs: FileRun[]): string {
  const { passed, failed } = counts(runs);
  const out = [`<?xml version="1.0" encoding="UTF-8"?>`, `<testsuites name="palisade test" tests="${passed + failed}" failures="${failed}">`];
  for (const run of runs) {
    const fails = run.results.filter((r) => !r.passed).length;
    out.push(`  <testsuite name="${xml(run.file.file)}" tests="${run.results.length}" failures="${fails}">`);
    for (const r of run.results) {
      const open = `    <testcase name="${xml(r.case.name)}" classname="${xml(run.file.file)}" file="${xml(r.case.at)}"`;
      if (r.passed) out.push(`${open}/>`);
      else out.push(`${open}>`, `      <failure message="${xml(r.failures[0] ?? 'failed')}">${xml(failure(r))}</failure>`, '    </testcase>');
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return `${out.join('\n')}\n`;
}

/** Text for an XML attribute or element; characters XML 1.0 cannot carry at all become U+FFFD. */
function xml(s: string): string {
  return s
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '\uFFFD')
    .replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}
