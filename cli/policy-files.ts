/**
 * Reading a policy file as `palisade compile`, `check` and `lint` do: a failure is one
 * `file: error:` line, and the run goes on to the next file.
 */
import { readFileSync } from 'node:fs';

/** The policy's text, or undefined after printing why it cannot be read. */
export function readPolicyFile(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    process.stderr.write(`${file}: error: cannot read policy: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
    return undefined;
  }
}
