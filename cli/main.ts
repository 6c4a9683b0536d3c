import { Command, CommanderError } from 'commander';
import { CliError } from './errors.ts';
import { VERSION } from './version.ts';

type Module = { register(program: Command): void };

/**
 * Each subcommand lives in its own module, loaded only when it runs: the compiler pulls in
 * chevrotain and ajv, the agent gRPC and Fastify, and an agent restarted by its supervisor
 * should not pay seconds of start-up for a compiler it never uses.
 */
const COMMANDS: Record<string, () => Promise<Module>> = {
  compile: () => import('./compile.ts'),
  check: () => import('./check.ts'),
  lint: () => import('./lint.ts'),
  test: () => import('./test.ts'),
  eval: () => import('./eval.ts'),
  diff: () => import('./diff.ts'),
  ca: () => import('./ca.ts'),
  agent: () => import('./agent.ts'),
  envoy: () => import('./envoy.ts'),
  demo: () => import('./demo.ts'),
};

/** Builds the `palisade` command tree with the named subcommand, or all of them (for help). */
export async function program(only?: string): Promise<Command> {
  const root = new Command('palisade')
    .description('Zero-trust service perimeter: policies compiled to proxy-wasm filters, SPIFFE identities for every service')
    .version(VERSION, '-V, --version', 'print the version, the proxy-wasm ABI and the AssemblyScript version')
    .exitOverride();
  const names = only && only in COMMANDS ? [only] : Object.keys(COMMANDS);
  for (const name of names) (await COMMANDS[name]()).register(root);
  return root;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await (await program(argv[2])).parseAsync(argv);
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
