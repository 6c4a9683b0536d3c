import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { compilePolicy } from '../compiler/index.ts';
import { formatDiagnostic } from '../compiler/frontend/ast.ts';
import { loadFilter, FilterLoadError } from '../host/index.ts';
import { parseCaseFile, runCases, CaseFileError, type CaseFile, type CaseResult } from '../testing/cases.ts';

/**
 * `palisade test <cases.json>...`: compiles each case file's policy and runs its cases
 * through the compiled filter in the strict host. Prints every failing case with expected
 * and actual values, then exactly `N passed, M failed`. Exit 0 when all pass, 1 when any
 * fails, 2 for unusable input (a bad case file or policy), before any case runs.
 */
export function register(program: Command): void {
  program.command('test')
    .description('run policy case files against the compiled filters in the strict proxy-wasm host')
    .argument('<cases...>', 'case files (JSON: { "policy": "x.policy.json", "cases": [...] })')
    .option('--wasm <file>', 'run every case file against this compiled filter instead of compiling its policy')
    .action(async (files: string[], opts: { wasm?: string }) => {
      const failed = await testFiles(files, opts.wasm);
      if (failed) throw new CliError('', 1);
    });
}

async function testFiles(files: string[], wasmFile?: string): Promise<number> {
  const caseFiles = files.map(readCaseFile);
  const filters = new Map<string, Uint8Array>(); // policy (or --wasm) path → wasm
  for (const cf of caseFiles) {
    const key = wasmFile ?? cf.policy;
    if (!filters.has(key)) filters.set(key, wasmFile ? readInput(wasmFile, 'compiled filter') : await compile(cf.policy));
  }
  let passed = 0;
  let failed = 0;
  for (const cf of caseFiles) {
    const key = wasmFile ?? cf.policy;
    let filter;
    try {
      filter = await loadFilter(filters.get(key)!, { name: path.basename(key) });
    } catch (err) {
      if (err instanceof FilterLoadError) throw new CliError(`${key}: the filter does not load in the strict host: ${err.message}`, 1);
      throw err;
    }
    try {
      for (const result of await runCases(filter, cf.cases)) {
        if (result.passed) passed++;
        else {
          failed++;
          process.stdout.write(report(result));
        }
      }
    } finally {
      await filter.close();
    }
  }
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  return failed;
}

function readInput(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new CliError(`${file}: cannot read ${what}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 2);
  }
}

function readCaseFile(file: string): CaseFile {
  try {
    return parseCaseFile(file, readInput(file, 'case file').toString('utf8'));
  } catch (err) {
    if (err instanceof CaseFileError) throw new CliError(err.message, 2);
    throw err;
  }
}

async function compile(policy: string): Promise<Uint8Array> {
  const result = await compilePolicy(policy, readInput(policy, 'policy').toString('utf8'));
  if (!result.ok) {
    for (const d of result.diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
    throw new CliError(`${policy}: the policy does not compile`, 2);
  }
  return result.wasm;
}

function report(result: CaseResult): string {
  const { case: c, outcome, decision } = result;
  const lines = [`FAIL ${c.at} ${JSON.stringify(c.name)}`, ...result.failures.map((f) => `  ${f}`)];
  if (decision) lines.push(`  (rule ${JSON.stringify(decision.rule)}, reason ${JSON.stringify(decision.reason)}, mode ${decision.mode})`);
  else if (outcome.details === 'wasm_fail_stream') lines.push('  (the filter trapped: 503 wasm_fail_stream)');
  return `${lines.join('\n')}\n`;
}
