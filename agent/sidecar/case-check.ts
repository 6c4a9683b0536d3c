/**
 * Hot-reload acceptance: a candidate filter must pass the policy's case file (the format of
 * `palisade test`, run by testing/cases.ts) before it replaces the running one. The cases
 * run against the candidate itself, in the strict host, before it has seen any traffic.
 */
import { readFile } from 'node:fs/promises';
import { parseCaseFile, runCases } from '../../testing/cases.ts';
import { FilterSet } from '../../testing/filter-set.ts';
import type { FilterCheck } from './filter-slot.ts';

export function caseFileCheck(file: string): FilterCheck {
  return async (wasm, filter) => {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new Error(`case file ${file}: ${(err as Error).message}`);
    }
    const { cases } = parseCaseFile(file, text);
    // Cases with their own plugin configuration run in instances of the candidate loaded with it.
    const filters = new FilterSet(wasm, 'candidate', filter);
    const failed = (await runCases(filters, cases).finally(() => filters.close())).filter((r) => !r.passed);
    if (failed.length) {
      const first = failed.slice(0, 3).map((r) => `"${r.case.name}" (${r.case.at}): ${r.failures.join('; ')}`);
      throw new Error(`${failed.length} of ${cases.length} cases in ${file} fail: ${first.join(' | ')}`);
    }
  };
}
