import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { checkPolicy } from '../compiler/index.ts';
import { formatDiagnostic } from '../compiler/frontend/ast.ts';
import { readPolicyFile } from './inputs.ts';

/**
 * `palisade check <policy.json>...`: everything `palisade compile` checks and warns about in
 * a policy (front end and optimizer), without building wasm and so without starting the
 * AssemblyScript compiler. Same diagnostics on stderr; exit 2 when any file has an error,
 * after every file was tried. (Two policies of one name are compile's concern: they clash
 * only when their artifacts go to one directory.)
 */
export function register(program: Command): void {
  program.command('check')
    .description('check policies as compile does, without building wasm (fast; for editors and CI)')
    .argument('<policy...>', 'policy files (JSON)')
    .action((files: string[]) => {
      let failed = false;
      for (const file of files) {
        const text = readPolicyFile(file);
        const result = text === undefined ? undefined : checkPolicy(file, text);
        if (!result?.ok) {
          for (const d of result?.diagnostics ?? []) process.stderr.write(`${formatDiagnostic(d)}\n`);
          failed = true;
          continue;
        }
        for (const w of result.warnings) process.stderr.write(`${formatDiagnostic(w)}\n`);
        process.stdout.write(`${file}: ok (${result.program.rules.length}/${result.policy.rules.length} rules live)\n`);
      }
      if (failed) throw new CliError('', 2);
    });
}
