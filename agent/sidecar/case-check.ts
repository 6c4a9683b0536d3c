/**
 * Hot-reload acceptance: a candidate filter must pass the policy's case file (the format of
 * `palisade test`) before it replaces the running one. The cases run against the candidate
 * itself, in the strict host, before it has seen any traffic.
 */
import { readFile } from 'node:fs/promises';
import { decisionOf, type FilterCheck, type LoadedFilter } from './filter-slot.ts';

interface Case {
  name: string;
  request: { method: string; path: string; headers?: Record<string, string>; source?: string; user?: Record<string, unknown> };
  expect: { decision: string; status?: number; upstreamHeaders?: Record<string, string> };
}

export function caseFileCheck(file: string): FilterCheck {
  return async (_wasm, filter) => {
    let cases: Case[];
    try {
      cases = (JSON.parse(await readFile(file, 'utf8')) as { cases: Case[] }).cases;
      if (!Array.isArray(cases)) throw new Error('no "cases" array');
    } catch (err) {
      throw new Error(`case file ${file}: ${(err as Error).message}`);
    }
    const failures: string[] = [];
    for (const c of cases) {
      const problem = await runCase(filter, c);
      if (problem) failures.push(`"${c.name}": ${problem}`);
    }
    if (failures.length) throw new Error(`${failures.length} of ${cases.length} cases in ${file} fail: ${failures.slice(0, 3).join('; ')}`);
  };
}

async function runCase(filter: LoadedFilter, c: Case): Promise<string | null> {
  const { request, expect } = c;
  const outcome = await filter.handleRequest({
    method: request.method,
    path: request.path,
    authority: 'palisade-case',
    headers: request.headers ?? {},
    source: request.source ? { principal: request.source } : {},
    metadata: request.user ? { 'envoy.filters.http.jwt_authn': { user: request.user } } : {},
  });
  const decision = decisionOf(outcome)?.decision;
  if (decision !== expect.decision) return `decision ${decision ?? 'none'}, expected ${expect.decision}`;
  if (expect.status !== undefined && outcome.status !== expect.status) return `status ${outcome.status}, expected ${expect.status}`;
  for (const [name, value] of Object.entries(expect.upstreamHeaders ?? {})) {
    const actual = outcome.upstreamRequest?.headers.find(([k]) => k === name)?.[1];
    if (actual !== value) return `upstream header ${name} is ${actual ?? 'absent'}, expected ${value}`;
  }
  return null;
}
