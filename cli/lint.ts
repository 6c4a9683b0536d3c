import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { forEachChecked } from './inputs.ts';
import { layerOption, readLayers } from './layers.ts';
import { formatFinding, lint } from '../lint/index.ts';

/**
 * `palisade lint <policy.json>...`: the findings of lint/ (dead, redundant, duplicate and
 * ambiguous parts of a policy that compiles) as `file:line:col: warning: message [id]` on
 * stdout, sorted by position, each once. Exit 0 when there is none, 1 when there are
 * findings, 2 when a policy does not compile (its diagnostics on stderr), after every file.
 * `--layer` composes each with scope layers (findings then point into every layer's file).
 */
export function register(program: Command): void {
  layerOption(program.command('lint'))
    .description('find rules that never apply, redundant or duplicate parts and ambiguous path templates')
    .argument('<policy...>', 'policy files (JSON)')
    .action((files: string[], opts: { layer: string[] }) => {
      let findings = 0;
      const ok = forEachChecked(files, (_file, checked) => {
        for (const f of lint(checked)) {
          findings++;
          process.stdout.write(`${formatFinding(f)}\n`);
        }
      }, readLayers(opts.layer));
      if (!ok) throw new CliError('', 2);
      if (findings) throw new CliError('', 1);
    });
}
