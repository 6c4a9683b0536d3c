import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { readInput } from './inputs.ts';
import { writeFileAtomic } from '../platform/files.ts';
import { ObservedError, parseObserved, type Observed } from '../learn/observed.ts';
import { propose, type Breadth } from '../learn/propose.ts';
import { verify } from '../learn/verify.ts';

interface LearnOptions {
  out: string;
  group: string;
  fanout: string;
  format: string;
}

/**
 * `palisade learn DECISIONS... --out DIR`: a least-privilege policy per observed service
 * (`DIR/<name>.policy.json`) from decision or audit log lines, each compiled, linted and
 * replayed against every observed request before the coverage report is printed
 * (docs/cases.md, "palisade learn"). Exit 0 when every proposal allows all it must and lint
 * finds nothing; 1 otherwise; 2 for unusable input.
 */
export function register(program: Command): void {
  program.command('learn')
    .description('propose least-privilege policies from observed decisions (decision log or audit log lines)')
    .argument('<decisions...>', 'JSON-lines files: sidecar decision logs or `palisade audit query --format json` output')
    .requiredOption('--out <dir>', 'directory for the proposed <service>.policy.json files')
    .option('--group <n>', 'distinct caller IDs under one prefix before they become prefix/*', '3')
    .option('--fanout <n>', 'distinct literal segments after a path prefix before it becomes prefix/**', '20')
    .option('--format <format>', 'coverage report as text or json', 'text')
    .action(async (files: string[], opts: LearnOptions) => {
      if (opts.format !== 'text' && opts.format !== 'json') throw new CliError(`--format must be "text" or "json", not "${opts.format}"`, 2);
      const thresholds = { group: count('--group', opts.group), fanout: count('--fanout', opts.fanout) };
      const observed: Observed[] = [];
      for (const file of files) {
        try {
          observed.push(...parseObserved(file, readInput(file, 'decisions').toString('utf8')));
        } catch (err) {
          if (err instanceof ObservedError) throw new CliError(err.message, 2);
          throw err;
        }
      }
      if (!observed.length) throw new CliError('no observed requests in the input', 2);
      mkdirSync(opts.out, { recursive: true });
      const report = [];
      for (const proposal of propose(observed, thresholds)) {
        const file = path.join(opts.out, `${proposal.name}.policy.json`);
        writeFileAtomic(file, `${JSON.stringify(proposal.policy, null, 2)}\n`);
        const v = await verify(file, proposal);
        report.push({ service: proposal.service, policy: file, observed: proposal.requests.length + proposal.unallowable, allowable: proposal.requests.length, allowed: v.allowed, unallowable: proposal.unallowable, refused: v.refused, lint: v.findings, generalizations: proposal.breadth });
      }
      process.stdout.write(opts.format === 'json' ? `${JSON.stringify({ services: report })}\n` : report.map(human).join(''));
      if (report.some((r) => r.allowed !== r.allowable || r.lint.length)) throw new CliError('', 1);
    });
}

function count(flag: string, text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1) throw new CliError(`${flag} must be a whole number of at least 1, not "${text}"`, 2);
  return n;
}

function human(r: { service: string; policy: string; observed: number; allowable: number; allowed: number; unallowable: number; refused: string[]; lint: string[]; generalizations: Breadth[] }): string {
  const lines = [`${r.policy} (${r.service}): ${r.allowed} of ${r.allowable} observed requests allowed by the compiled proposal${r.unallowable ? `; ${r.unallowable} no policy can allow (no verified workload caller, or a method or path the filter refuses)` : ''}`];
  for (const g of r.generalizations) {
    if (g.kind === 'callers') lines.push(`  callers ${g.pattern}: ${g.ids} distinct IDs seen`);
    else if (g.kind === 'param') lines.push(`  path ${g.template}: ${g.param} stood for ${g.values} distinct value${g.values === 1 ? '' : 's'}`);
    else lines.push(`  path ${g.template}: covers ${g.paths} distinct observed paths`);
  }
  lines.push(...r.refused.map((x) => `  NOT ALLOWED: ${x}`), ...r.lint.map((x) => `  lint: ${x}`));
  return `${lines.join('\n')}\n`;
}
