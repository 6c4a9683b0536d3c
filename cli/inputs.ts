/** Reading the files `palisade` commands are given, and refusing them: one line per problem. */
import { readFileSync } from 'node:fs';
import { CliError } from './errors.ts';
import { formatDiagnostic, type Diagnostic } from '../compiler/frontend/ast.ts';
import { checkLayers, checkPolicy, type Checked, type LayerText } from '../compiler/index.ts';

/**
 * A policy's text, or undefined after printing `file: error: cannot read policy: CODE`, for
 * commands that go on to the next file (`compile`, `check`).
 */
export function readPolicyFile(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    process.stderr.write(`${file}: error: cannot read policy: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
    return undefined;
  }
}

/** A file the command cannot do without; unreadable: `file: cannot read <what>: CODE`, exit 2. */
export function readInput(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new CliError(`${file}: cannot read ${what}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 2);
  }
}

/** A policy that does not compile, for commands that cannot go on without it: its diagnostics, then exit 2. */
export function failCompile(file: string, diagnostics: Diagnostic[]): never {
  for (const d of diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
  throw new CliError(`${file}: the policy does not compile`, 2);
}

/**
 * Reads and checks each policy (`check`, `lint`), composed with `layers` when there are any,
 * handing the ones that compile to `each`; the others' diagnostics go to stderr. True when
 * every file compiled.
 */
export function forEachChecked(files: string[], each: (file: string, checked: Checked) => void, layers: LayerText[] = []): boolean {
  let ok = true;
  for (const file of files) {
    const text = readPolicyFile(file);
    const result = text === undefined ? undefined : checkComposed(file, text, layers);
    if (!result?.ok) {
      for (const d of result?.diagnostics ?? []) process.stderr.write(`${formatDiagnostic(d)}\n`);
      ok = false;
    } else each(file, result);
  }
  return ok;
}

/** The policy checked as `compile` would build it: composed with `layers` (`--layer`) when there are any. */
export function checkComposed(file: string, text: string, layers: LayerText[]): ReturnType<typeof checkPolicy> {
  return layers.length ? checkLayers([...layers, { file, text }]) : checkPolicy(file, text);
}
