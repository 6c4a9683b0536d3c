import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { failCompile, readInput } from './inputs.ts';
import { analyze } from '../compiler/frontend/index.ts';
import type { CheckedPolicy } from '../compiler/frontend/ast.ts';
import { diffPolicies, type Region } from '../diff/index.ts';

/**
 * `palisade diff OLD NEW [--format text|json]`: every region of requests the two versions
 * decide differently (diff/index.ts), each with a witness request in the case-file
 * `request` format that `palisade eval` decides the same way. Exit 0 when the versions are
 * equivalent, 1 when they differ (CI can gate on it), 2 for unusable input.
 */
export function register(program: Command): void {
  program.command('diff')
    .description('the requests two versions of a policy decide differently, with a witness each')
    .argument('<old>', 'the current policy file')
    .argument('<new>', 'the proposed policy file')
    .option('--format <format>', 'text or json', 'text')
    .action((oldFile: string, newFile: string, opts: { format: string }) => {
      if (opts.format !== 'text' && opts.format !== 'json') throw new CliError(`--format must be "text" or "json", not "${opts.format}"`, 2);
      const [a, b] = [checked(oldFile), checked(newFile)];
      if (a.service !== b.service) throw new CliError(`${oldFile} protects ${a.service}, ${newFile} protects ${b.service}: diff compares versions of one service's policy`, 2);
      const regions = diffPolicies(a, b);
      process.stdout.write(opts.format === 'json' ? `${JSON.stringify({ equivalent: regions.length === 0, regions }, null, 2)}\n` : text(regions));
      if (regions.length) throw new CliError('', 1);
    });
}

function checked(file: string): CheckedPolicy {
  const { policy, diagnostics } = analyze(file, readInput(file, 'policy').toString('utf8'));
  if (!policy) failCompile(file, diagnostics);
  return policy;
}

function text(regions: Region[]): string {
  if (!regions.length) return 'equivalent: no request is decided differently\n';
  const show = (d: Region['old']) => `${d.decision} ${d.status}${Object.keys(d.inject).length ? ` inject ${JSON.stringify(d.inject)}` : ''}`;
  const lines = regions.flatMap((r) => [
    `${show(r.old)} → ${show(r.new)}: callers ${r.callers} × ${r.method} × ${r.paths}${r.condition === 'true' ? '' : ` if ${r.condition}`}`,
    `  witness: ${r.witness ? JSON.stringify(r.witness) : 'none found (the difference depends on a condition; cell ' + JSON.stringify(r.cell) + ')'}`,
  ]);
  return `${lines.join('\n')}\n${regions.length} region${regions.length === 1 ? '' : 's'} decided differently\n`;
}
