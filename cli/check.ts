import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { formatDiagnostic } from '../compiler/frontend/ast.ts';
import { forEachChecked } from './inputs.ts';
import { layerOption, readLayers } from './layers.ts';

/**
 * `palisade check <policy.json>...`: everything `palisade compile` checks and warns about in
 * a policy (front end and optimizer), without building wasm and so without starting the
 * AssemblyScript compiler. Same diagnostics on stderr; exit 2 when any file has an error,
 * after every file was tried. (Two policies of one name are compile's concern: they clash
 * only when their artifacts go to one directory.) `--layer` composes each with scope layers.
 */
export function register(program: Command): void {
  layerOption(program.command('check'))
    .description('check policies as compile does, without building wasm (fast; for editors and CI)')
    .argument('<policy...>', 'policy files (JSON)')
    .action((files: string[], opts: { layer: string[] }) => {
      const ok = forEachChecked(files, (file, { policy, program: ir, warnings }) => {
        for (const w of warnings) process.stderr.write(`${formatDiagnostic(w)}\n`);
        process.stdout.write(`${file}: ok (${ir.rules.length}/${policy.rules.length} rules live)\n`);
      }, readLayers(opts.layer));
      if (!ok) throw new CliError('', 2);
    });
}
