import { Command, CommanderError } from 'commander';
import { CliError } from './errors.ts';
import { register as compile } from './compile.ts';
import { register as test } from './test.ts';
import { register as ca } from './ca.ts';
import { register as agent } from './agent.ts';
import { register as envoy } from './envoy.ts';
import { register as demo } from './demo.ts';

/** Builds the `palisade` command tree; each subcommand lives in its own module. */
export function program(): Command {
  const root = new Command('palisade')
    .description('Zero-trust service perimeter: policies compiled to proxy-wasm filters, SPIFFE identities for every service')
    .exitOverride();
  for (const add of [compile, test, ca, agent, envoy, demo]) add(root);
  return root;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (err) {
    process.exitCode = report(err);
  }
}

/** Prints an error the way a user should see it and returns the exit code. */
function report(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2; // commander already printed it
  if (err instanceof CliError) {
    if (err.message) process.stderr.write(`palisade: ${err.message}\n`);
    return err.exitCode;
  }
  // Anything else is a bug in Palisade; still no stack trace unless asked for.
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`palisade: internal error: ${message}\n`);
  if (process.env.PALISADE_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
  return 1;
}
