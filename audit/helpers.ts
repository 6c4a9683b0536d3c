/**
 * The helper threads of `palisade audit verify` (audit/verify-worker.ts): one per core (at
 * most 4), each checking whole runs of entries (audit/entry-runs.ts) while the main thread
 * reads segments, splits them into runs and builds the tree from the leaf hashes they answer.
 * A run is one message each way, so the threads hardly ever wait on each other.
 *
 * The helper is TypeScript like the checks it shares with the agent (audit/evidence.ts), and
 * a thread does not inherit the main thread's TypeScript loader (nor would dist/ hold the
 * helper apart), so its code is bundled from the sources with esbuild, once per process: in
 * a separate process, in tens of milliseconds, and a thread starts from plain JavaScript.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { EntryRun, RunResult } from './entry-runs.ts';
import type { HelperSetup } from './verify-worker.ts';

export class HelperError extends Error {}

interface Helper {
  worker: Worker;
  pending: Map<number, { resolve(result: RunResult): void; reject(err: Error): void }>;
  /** This verify's listeners on the thread, removed when it is done with it. */
  listeners: [event: string, listener: (...args: any[]) => void][];
}

/**
 * Threads a verify left with nothing in hand, for the next verify of the process (starting
 * one costs ~50 ms of CPU: its own copy of Node's internals); idle, they do not keep the
 * process alive.
 */
let idle: Worker[] | undefined;

let helperCode: Promise<string> | undefined;

/** audit/verify-worker.ts and what it imports as one CommonJS script (a thread's `eval` code). */
function bundledHelper(): Promise<string> {
  helperCode ??= build({
    entryPoints: [fileURLToPath(new URL('./verify-worker.ts', import.meta.url))],
    bundle: true,
    write: false,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    logLevel: 'error',
  }).then((result) => result.outputFiles[0]!.text);
  return helperCode;
}

function startHelper(code: string): Worker {
  // Each entry parsed leaves ~1 KB of garbage: a young generation larger than the default scavenges less often.
  const worker = new Worker(code, { eval: true, execArgv: [], resourceLimits: { maxYoungGenerationSizeMb: 64 } });
  // A thread that fails while idle is not handed out again.
  const forget = () => {
    if (idle?.includes(worker)) idle = undefined;
  };
  worker.on('error', forget).on('exit', forget);
  return worker;
}

export class VerifyHelpers {
  readonly #helpers: Helper[];
  #next = 0;
  #ids = 0;
  #failure: HelperError | undefined;

  static async start(setup: HelperSetup, count = Math.min(availableParallelism(), 4)): Promise<VerifyHelpers> {
    const code = await bundledHelper();
    const workers = idle?.length === count ? idle : Array.from({ length: Math.max(1, count) }, () => startHelper(code));
    if (workers === idle) idle = undefined;
    return new VerifyHelpers(workers, setup);
  }

  private constructor(workers: Worker[], setup: HelperSetup) {
    this.#helpers = workers.map((worker) => {
      const helper: Helper = { worker, pending: new Map(), listeners: [] };
      const on = (event: string, listener: (...args: any[]) => void) => {
        worker.on(event, listener);
        helper.listeners.push([event, listener]);
      };
      on('message', (m: RunResult & { id: number; error?: string }) => {
        const job = helper.pending.get(m.id);
        helper.pending.delete(m.id);
        if (m.error !== undefined) job?.reject(new HelperError(`a verify helper thread failed: ${m.error}`));
        else job?.resolve(m);
      });
      on('error', (err: Error) => this.#fail(helper, err));
      on('exit', () => this.#fail(helper, new Error('exited')));
      worker.ref();
      worker.postMessage({ setup });
      return helper;
    });
  }

  /** Checks `run` on the next helper in turn. Rejects with HelperError if that helper fails: what it was asked is then unanswered. */
  check(run: EntryRun): Promise<RunResult> {
    if (this.#failure) return Promise.reject(this.#failure);
    const helper = this.#helpers[this.#next++ % this.#helpers.length]!;
    const id = this.#ids++;
    return new Promise((resolve, reject) => {
      helper.pending.set(id, { resolve, reject });
      helper.worker.postMessage({ id, run });
    });
  }

  /** Done with the helpers: kept for the next verify if nothing is left in their hands, else stopped. */
  async close(): Promise<void> {
    const clean = !this.#failure && this.#helpers.every((h) => h.pending.size === 0);
    const workers = this.#helpers.map((h) => h.worker);
    // Stopped with runs in hand, a thread's exit refuses them (#fail) before it is let go.
    if (!clean || idle !== undefined) await Promise.all(workers.map((worker) => worker.terminate()));
    for (const { worker, listeners } of this.#helpers) for (const [event, listener] of listeners) worker.off(event, listener);
    if (clean && idle === undefined) {
      for (const worker of workers) worker.unref();
      idle = workers;
    }
  }

  #fail(helper: Helper, err: Error): void {
    this.#failure ??= new HelperError(`a verify helper thread failed: ${err.message}`);
    for (const job of helper.pending.values()) job.reject(this.#failure);
    helper.pending.clear();
  }
}
