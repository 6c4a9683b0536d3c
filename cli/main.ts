import { Command, CommanderError } from 'commander';
import { CliError } from './errors.ts';
import { VERSION } from './version.ts';
import { tuneDaemonHeap } from './daemon-heap.ts';
import { compileWasmOnce } from './one-shot-wasm.ts';

type Module = { register(program: Command): void };

/**
 * Each subcommand lives in its own module, loaded only when it runs: the compiler pulls in
 * chevrotain and ajv, the agent gRPC and Fastify, and an agent restarted by its supervisor
 * should not pay for a compiler it never uses. `palisade --help` loads none of them: the
 * summary here is what the command list shows (`palisade <command> --help` has the rest).
 */
const COMMANDS: Record<string, { summary: string; load: () => Promise<Module> }> = {
  compile: { summary: 'compile policies to proxy-wasm filters', load: () => (compileWasmOnce(), import('./compile.ts')) },
  check: { summary: "compile's diagnostics and warnings, without building wasm", load: () => import('./check.ts') },
  lint: { summary: 'dead, redundant, duplicate and ambiguous parts of policies', load: () => import('./lint.ts') },
  test: { summary: 'run policy case files in the strict proxy-wasm host', load: () => (compileWasmOnce(), import('./test.ts')) },
  eval: { summary: "one request's decision through the real filter", load: () => (compileWasmOnce(), import('./eval.ts')) },
  diff: { summary: 'the requests two versions of a policy decide differently', load: () => import('./diff.ts') },
  ca: { summary: 'the certificate authority: SPIFFE X.509-SVIDs, join tokens', load: () => import('./ca.ts') },
  control: { summary: 'control plane: policies through an API, versioned, pushed to every agent', load: () => import('./control.ts') },
  agent: { summary: 'node agent: SVID in memory, SDS/ECDS for Envoy, embedded mTLS sidecar', load: () => (tuneDaemonHeap(), import('./agent.ts')) },
  envoy: { summary: 'Envoy bootstrap generation and validation', load: () => import('./envoy.ts') },
  demo: { summary: 'the zero-trust demo on loopback', load: () => import('./demo.ts') },
  audit: { summary: 'verify, query and prove entries of a decision audit log', load: () => import('./audit.ts') },
  learn: { summary: 'least-privilege policies proposed from observed decisions', load: () => import('./learn.ts') },
};

/**
 * Builds the `palisade` command tree with the named subcommand, or with every subcommand
 * as a summary line only (help, version, an unknown command).
 */
export async function program(only?: string): Promise<Command> {
  const root = new Command('palisade')
    .description('Zero-trust service perimeter: policies compiled to proxy-wasm filters, SPIFFE identities for every service')
    .version(VERSION, '-V, --version', 'print the version, the proxy-wasm ABI and the AssemblyScript version')
    .exitOverride();
  if (only && Object.hasOwn(COMMANDS, only)) (await COMMANDS[only].load()).register(root);
  else for (const [name, { summary }] of Object.entries(COMMANDS)) root.command(name).summary(summary);
  return root;
}

export async function main(argv: string[]): Promise<void> {
  try {
    // `palisade help ca` is `palisade ca --help`: it needs ca's options.
    await (await program(argv[2] === 'help' ? argv[3] : argv[2])).parseAsync(argv);
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
