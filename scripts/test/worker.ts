/**
 * One worker of `npm test` (scripts/test.ts): a long-lived process that runs the test files
 * it is handed, one at a time, the way uvu/run does for a whole run: it queues the file
 * under its name (UVU_QUEUE), imports it (its suites register their runners there) and
 * calls each runner. Long-lived so tsx, the compiler and the compiled-policy cache
 * (test/support/compiled.ts) load once per worker, not once per file.
 *
 * Everything the file prints (uvu's dots, failures, a suite's SKIPPED line) is captured and
 * sent back with the totals, so the parent prints each file whole. Anything written to the
 * worker's descriptors directly (a child process with inherited stdio) reaches the parent
 * through the pipes and is added to the file running then.
 */
import { writeSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

export interface FileJob {
  /** As uvu names it: relative to the test directory. */
  name: string;
  file: string;
}

export interface FileResult {
  name: string;
  output: string;
  total: number;
  passed: number;
  skipped: number;
  /** Tests that failed, plus one when the file itself could not be loaded. */
  failed: number;
  wallMs: number;
  /** CPU of this worker while the file ran (its children are measured by the exit hook). */
  cpuMs: number;
}

type Runner = () => Promise<[errors: string | true, passed: number, skipped: number, total: number]>;

declare global {
  var UVU_DEFER: number;
  var UVU_QUEUE: [string | null, ...Runner[]][];
  var UVU_INDEX: number;
}

// Set before uvu loads: its suites then queue their runners instead of running themselves.
globalThis.UVU_DEFER = 1;
globalThis.UVU_QUEUE = [];
await import('uvu');

let output = '';
const capture = (stream: NodeJS.WriteStream) => {
  stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    output += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    const done = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
    done?.();
    return true;
  }) as typeof stream.write;
};
capture(process.stdout);
capture(process.stderr);

async function runFile(job: FileJob): Promise<FileResult> {
  output = '';
  const started = Date.now();
  const cpu = process.cpuUsage();
  const result = { total: 0, passed: 0, skipped: 0, failed: 0 };
  globalThis.UVU_QUEUE = [[job.name]];
  globalThis.UVU_INDEX = 0;
  try {
    await import(pathToFileURL(job.file).href);
    const [, ...runners] = globalThis.UVU_QUEUE[0] as [string, ...Runner[]];
    for (const run of runners) {
      const [errors, passed, skipped, total] = await run();
      result.total += total;
      result.passed += passed;
      result.skipped += skipped;
      if (errors !== true) {
        result.failed += total - passed;
        output += `\n${errors}\n`;
      } else if (passed < total) {
        // uvu returns from a suite whose before hook threw as if it had passed, error dropped.
        result.failed += total - passed;
        output += `\n${total - passed} of ${total} tests did not run: a before or after hook threw (uvu does not report its error)\n`;
      }
    }
  } catch (err) {
    // The file did not load (a failed top-level setup) or a suite's hook threw.
    result.failed += 1;
    output += `\n${(err as Error)?.stack ?? String(err)}\n`;
  }
  const used = process.cpuUsage(cpu);
  return { name: job.name, output, ...result, wallMs: Date.now() - started, cpuMs: (used.user + used.system) / 1000 };
}

// An error no test awaited ends the worker, as it ends a plain uvu run: what the file printed
// so far and the error go out through the real stderr, which the parent adds to the file.
const fatal = (err: unknown) => {
  writeSync(2, `${output}\n${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
};
process.on('uncaughtException', fatal);
process.on('unhandledRejection', fatal);

process.on('message', async (job: FileJob | 'exit') => {
  // Suites may leave handles open (uvu's own run would wait for them): the parent decides when we are done.
  if (job === 'exit') process.exit(0);
  process.send!(await runFile(job));
});
process.send!('ready');
