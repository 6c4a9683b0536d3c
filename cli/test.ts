import path from 'node:path';
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { checkComposed, failCompile, readInput } from './inputs.ts';
import { layerOption, readLayers, runnableFilter } from './layers.ts';
import type { LayerText } from '../compiler/index.ts';
import type { CheckedPolicy } from '../compiler/frontend/ast.ts';
import { FilterLoadError } from '../host/index.ts';
import { parseCaseFile, runCases, CaseFileError, type CaseFile } from '../testing/cases.ts';
import { FilterSet } from '../testing/filter-set.ts';
import { coverage, type PolicyCoverage } from '../testing/coverage.ts';
import { render, FORMATS, type FileRun, type Format } from './test-report.ts';

interface TestOptions {
  wasm?: string;
  verbose?: boolean;
  run?: string;
  format: string;
  coverage?: boolean;
  cache: boolean;
  layer: string[];
}

/**
 * `palisade test <cases.json>...`: compiles each case file's policy (or takes it from the
 * filter cache, testing/filter-cache.ts) and runs its cases through the compiled filter in
 * the strict host. Reports as text (failing cases, `-v` every case, then exactly
 * `N passed, M failed`), JSON or JUnit XML; `--coverage` adds what no case exercised.
 * Exit 0 when all pass, 1 when any fails, 2 for unusable input (every problem of every case
 * file, a policy that does not compile, a `--run` that selects nothing), before any case runs.
 * `--layer` composes every case file's policy with scope layers (compiled without the cache).
 */
export function register(program: Command): void {
  layerOption(program.command('test'))
    .description('run policy case files against the compiled filters in the strict proxy-wasm host')
    .argument('<cases...>', 'case files (JSON: { "policy": "x.policy.json", "cases": [...] }; schema/cases.schema.json)')
    .option('--wasm <file>', 'run every case file against this compiled filter instead of compiling its policy')
    .option('-v, --verbose', 'print every case with its decision, not only the failing ones')
    .option('--run <regex>', 'run only the cases whose name matches this regular expression')
    .option('--format <format>', `report format: ${FORMATS.join(', ')}`, 'text')
    .option('--coverage', 'report the rules, `to` entries and `when` branches no case exercised')
    .option('--no-cache', 'compile every policy instead of using the compiled-filter cache')
    .action(async (files: string[], opts: TestOptions) => {
      if (!(FORMATS as readonly string[]).includes(opts.format)) throw new CliError(`--format must be one of ${FORMATS.join(', ')}, not "${opts.format}"`, 2);
      if (opts.wasm && opts.layer.length) throw new CliError('--layer composes the case files\' policies: it has nothing to do with a --wasm filter', 2);
      const layers = readLayers(opts.layer);
      const caseFiles = select(files.map(readCaseFile), opts.run);
      const runs = await runFiles(caseFiles, opts, layers);
      const covered = opts.coverage ? coverageOf(runs, layers) : undefined;
      process.stdout.write(render(opts.format as Format, runs, { verbose: !!opts.verbose, coverage: covered }));
      if (runs.some((r) => r.results.some((x) => !x.passed))) throw new CliError('', 1);
    });
}

/** Every problem of every case file on stderr before anything runs. */
function readCaseFile(file: string): CaseFile | null {
  try {
    return parseCaseFile(file, readInput(file, 'case file').toString('utf8'));
  } catch (err) {
    if (!(err instanceof CaseFileError)) throw err;
    process.stderr.write(`${err.message}\n`);
    return null;
  }
}

function select(caseFiles: (CaseFile | null)[], run: string | undefined): CaseFile[] {
  if (caseFiles.includes(null)) throw new CliError('', 2);
  if (run === undefined) return caseFiles as CaseFile[];
  let pattern: RegExp;
  try {
    pattern = new RegExp(run);
  } catch (err) {
    throw new CliError(`--run: not a regular expression: ${(err as Error).message}`, 2);
  }
  const selected = (caseFiles as CaseFile[]).map((cf) => ({ ...cf, cases: cf.cases.filter((c) => pattern.test(c.name)) })).filter((cf) => cf.cases.length);
  if (!selected.length) throw new CliError(`--run ${JSON.stringify(run)} selects no case`, 2);
  return selected;
}

async function runFiles(caseFiles: CaseFile[], opts: TestOptions, layers: LayerText[]): Promise<FileRun[]> {
  const filters = new Map<string, Uint8Array>(); // policy (or --wasm) path → wasm
  for (const cf of caseFiles) {
    const key = opts.wasm ?? cf.policy;
    if (!filters.has(key)) filters.set(key, opts.wasm ? readInput(opts.wasm, 'compiled filter') : await compile(cf.policy, opts.cache, layers));
  }
  const runs: FileRun[] = [];
  for (const cf of caseFiles) {
    const key = opts.wasm ?? cf.policy;
    const set = new FilterSet(filters.get(key)!, path.basename(key));
    try {
      await set.for(undefined);
    } catch (err) {
      if (err instanceof FilterLoadError) throw new CliError(`${key}: the filter does not load in the strict host: ${err.message}`, 1);
      throw err;
    }
    try {
      runs.push({ file: cf, results: await runCases(set, cf.cases) });
    } finally {
      await set.close();
    }
  }
  return runs;
}

function compile(policy: string, cache: boolean, layers: LayerText[]): Promise<Uint8Array> {
  return runnableFilter(policy, readInput(policy, 'policy').toString('utf8'), layers, cache);
}

/** Per policy, over the cases of every file that tests it. */
function coverageOf(runs: FileRun[], layers: LayerText[]): PolicyCoverage[] {
  const policies = [...new Set(runs.map((r) => r.file.policy))];
  return policies.map((file) => coverage(checked(file, layers), runs.filter((r) => r.file.policy === file).flatMap((r) => r.results)));
}

function checked(file: string, layers: LayerText[]): CheckedPolicy {
  const result = checkComposed(path.relative(process.cwd(), file), readInput(file, 'policy').toString('utf8'), layers);
  if (!result.ok) failCompile(file, result.diagnostics);
  return result.policy;
}
