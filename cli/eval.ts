import path from 'node:path';
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { checkComposed, failCompile, readInput } from './inputs.ts';
import { layerOption, readLayers, runnableFilter } from './layers.ts';
import { FilterLoadError } from '../host/index.ts';
import { CaseFileError, evaluate, forwardedHeaders, parseRequest, type CaseRequest } from '../testing/cases.ts';
import { REASONS } from '../testing/decision-line.ts';
import { FilterSet } from '../testing/filter-set.ts';

interface EvalOptions {
  policy: string;
  request?: string;
  requestFile?: string;
  config?: string;
  format: string;
  cache: boolean;
  layer: string[];
}

/**
 * `palisade eval --policy P (--request JSON | --request-file F)`: what one request (in the
 * case-file `request` format) gets from the policy's compiled filter in the strict host,
 * exactly as `palisade test` would run it: decision, status, rule, reason, mode and the
 * headers the filter injects. Exit 0 whatever the decision; 2 for unusable input. `--layer`
 * composes the policy with scope layers first.
 */
export function register(program: Command): void {
  layerOption(program.command('eval'))
    .description('show the decision one request gets from a policy (through the real compiled filter)')
    .requiredOption('--policy <file>', 'policy file (JSON)')
    .option('--request <json>', 'the request, as a case file\'s "request": {"method":"GET","path":"/x","source":"spiffe://…"}')
    .option('--request-file <file>', 'read the request from this file instead')
    .option('--config <json>', 'plugin configuration, e.g. {"mode":"dry-run"}')
    .option('--format <format>', 'text or json', 'text')
    .option('--no-cache', 'compile the policy instead of using the compiled-filter cache')
    .action(async (opts: EvalOptions) => {
      if (opts.format !== 'text' && opts.format !== 'json') throw new CliError(`--format must be "text" or "json", not "${opts.format}"`, 2);
      const request = requestOf(opts);
      const config = configOf(opts.config);
      const text = readInput(opts.policy, 'policy').toString('utf8');
      const layers = readLayers(opts.layer);
      const checked = checkComposed(opts.policy, text, layers);
      if (!checked.ok) failCompile(opts.policy, checked.diagnostics);
      const filters = new FilterSet(await runnableFilter(opts.policy, text, layers, opts.cache), path.basename(opts.policy));
      try {
        let filter;
        try {
          filter = await filters.for(config);
        } catch (err) {
          if (err instanceof FilterLoadError) throw new CliError(`the filter refuses this plugin configuration: ${err.message}`, 2);
          throw err;
        }
        const result = await evaluate(filter, request, checked.program.service, 'eval');
        if (typeof result === 'string') throw new CliError(result, 2);
        const d = result.decision;
        if (!d) throw new CliError(`the filter logged no decision (${result.outcome.details || `status ${result.outcome.status}`})`, 1);
        const answer = { ...d, status: result.outcome.status, upstreamHeaders: forwardedHeaders(result.outcome, checked.program.strip) ?? null };
        process.stdout.write(opts.format === 'json' ? `${JSON.stringify(answer)}\n` : human(answer));
      } finally {
        await filters.close();
      }
    });
}

function requestOf(opts: EvalOptions): CaseRequest {
  if ((opts.request === undefined) === (opts.requestFile === undefined)) throw new CliError('give the request with exactly one of --request JSON or --request-file FILE', 2);
  const [label, text] = opts.request !== undefined ? ['--request', opts.request] : [opts.requestFile!, readInput(opts.requestFile!, 'request').toString('utf8')];
  try {
    return parseRequest(label, text);
  } catch (err) {
    if (err instanceof CaseFileError) throw new CliError(err.message, 2);
    throw err;
  }
}

function configOf(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CliError(`--config: not JSON: ${(err as Error).message}`, 2);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CliError('--config must be a JSON object', 2);
  return value as Record<string, unknown>;
}

function human(a: { decision: string; status: number; rule: string | null; reason: string; mode: string; upstreamHeaders: Record<string, string> | null }): string {
  const why = REASONS[a.reason as keyof typeof REASONS];
  const lines = [
    `decision  ${a.decision}`,
    `status    ${a.status}`,
    `rule      ${a.rule ?? '(none)'}`,
    `reason    ${a.reason}${why ? ` (${why})` : ''}`,
    `mode      ${a.mode}`,
  ];
  if (a.upstreamHeaders) lines.push(...Object.entries(a.upstreamHeaders).map(([k, v]) => `inject    ${k}: ${JSON.stringify(v)}`));
  return `${lines.join('\n')}\n`;
}
