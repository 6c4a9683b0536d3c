/**
 * `npm test`: every test file, in a pool of worker processes (scripts/test/worker.ts runs
 * each file through uvu's own suite queue), with `tsc --noEmit` alongside rather than first.
 * uvu alone runs the files one after another in one process, so a core idles whenever a
 * test waits on a spawned process, a handshake, a PostgreSQL start or a browser.
 *
 *   node --import tsx scripts/test.ts [dir] [pattern] [--jobs N] [--times]
 *
 * dir and pattern select files as uvu does (default: `test`, `\.test\.ts$`); the type-check
 * runs only for the whole suite. Files are handed out longest first, by the durations
 * recorded in scripts/test/durations.json (a file not listed there goes first: it may be
 * long). Each file's output is printed whole, under its name, when it ends; then the
 * totals, the SKIPPED lines of suites that could not run, and the failures. The exit code
 * is non-zero when a test, a file or the type-check failed.
 *
 * --times (`npm run test:times`) also counts the CPU of every process a file spawned (the
 * exit hook in scripts/test/cpu-hook.cjs), prints the slowest files and rewrites
 * durations.json.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { availableParallelism, setPriority, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { parse } from 'uvu/parse';
import type { FileJob, FileResult } from './test/worker.ts';
import { childCpuByFile, type Placed } from './test/times.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const DURATIONS = path.join(here, 'test', 'durations.json');
const WORKER = path.join(here, 'test', 'worker.ts');
const HOOK = path.join(here, 'test', 'cpu-hook.cjs');
const TSC_NICE = 10;

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i < 0 ? null : args.splice(i, name === '--times' ? 1 : 2).at(1) ?? '';
};
const times = flag('--times') !== null;
// One worker more than the cores: a file waiting for a real SVID rotation or a child process
// leaves its core to another file (2 cores: 133.7–135.1 s with 3 workers, 137.8–146.2 s with 2).
const jobs = Number(flag('--jobs') ?? process.env.PALISADE_TEST_JOBS ?? availableParallelism() + 1);
const [dir = 'test', pattern = '\\.test\\.ts$'] = args;
const whole = args.length === 0;

const started = Date.now();
// Colours as uvu's own CLI gives them (it sets FORCE_COLOR for the run and its children).
process.env.FORCE_COLOR ??= '1';
// This run's shared files: compiled policies the workers share (test/support/compiled.ts), the times log.
const runDir = mkdtempSync(path.join(tmpdir(), 'palisade-test-run-'));
const timesLog = times ? path.join(runDir, 'processes.jsonl') : null;
// The CLI's filter cache lives in the run too: the `palisade test`/`eval` processes of every file
// build each policy once, and the suite neither reads nor fills the user's own cache.
const env: NodeJS.ProcessEnv = { ...process.env, PALISADE_TEST_RUN_DIR: runDir, PALISADE_CACHE_DIR: path.join(runDir, 'filters') };
if (timesLog) Object.assign(env, { PALISADE_TEST_TIMES: timesLog, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${HOOK}`.trim() });

const children = new Set<ChildProcess>();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    for (const child of children) child.kill('SIGTERM');
    rmSync(runDir, { recursive: true, force: true });
    process.exit(130);
  });
}

const typecheck = whole ? typeCheck() : null;
const { suites } = await parse(dir, pattern, {});
const recorded: Record<string, number> = JSON.parse(readFileSync(DURATIONS, 'utf8'));
// Named from test/ whatever dir selected them, as durations.json names them.
const queue: FileJob[] = suites
  .map((s) => ({ name: path.relative(path.resolve('test'), s.file), file: s.file }))
  .sort((a, b) => (recorded[b.name] ?? Infinity) - (recorded[a.name] ?? Infinity));

const results: (FileResult & Placed)[] = [];
const workers = Math.max(1, Math.min(jobs, queue.length));
await Promise.all(Array.from({ length: workers }, () => drain()));
const checked = typecheck && (await typecheck);

summarize();
if (timesLog) reportTimes(timesLog);
rmSync(runDir, { recursive: true, force: true });
const failed = results.some((r) => r.failed > 0) || (checked && checked.code !== 0);
process.exit(failed ? 1 : 0);

/** The child, ended with the run when the run is interrupted (a CI timeout sends SIGTERM to the runner alone). */
function running<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** One worker process taking files off the queue until it is empty; a worker that dies is replaced. */
async function drain(): Promise<void> {
  while (queue.length) {
    const worker = running(fork(WORKER, [], { execArgv: ['--import', 'tsx'], env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] }));
    let stray = '';
    worker.stdout!.on('data', (d) => (stray += d));
    worker.stderr!.on('data', (d) => (stray += d));
    const gone = new Promise<number>((resolve) => worker.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
    await new Promise((resolve) => worker.once('message', resolve));
    for (let job = queue.shift(); job; job = queue.shift()) {
      const start = Date.now();
      worker.send(job);
      const outcome = await Promise.race([new Promise<FileResult>((resolve) => worker.once('message', resolve)), gone]);
      const result: FileResult =
        typeof outcome === 'number'
          ? { name: job.name, output: `worker exited (code ${outcome}) while running this file`, total: 0, passed: 0, skipped: 0, failed: 1, wallMs: Date.now() - start, cpuMs: 0 }
          : outcome;
      result.output += stray;
      stray = '';
      results.push({ ...result, worker: worker.pid!, start, end: Date.now() });
      print(result);
      if (typeof outcome === 'number') break;
    }
    if (worker.exitCode === null) {
      worker.send('exit');
      await gone;
    }
  }
}

function typeCheck(): Promise<{ code: number; output: string; endedMs: number }> {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const child = running(spawn(process.execPath, [tsc, '--noEmit'], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
  // ~13 s of CPU that nothing waits for until the end: it takes the cores the test files
  // leave idle (waits on rotations, handshakes, child processes) rather than slowing the
  // longest files, which go first and make the run's critical path.
  try {
    setPriority(child.pid!, TSC_NICE);
  } catch {
    // Not permitted here (some containers): it runs at normal priority.
  }
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code: code ?? 1, output, endedMs: Date.now() - started })));
}

function print(r: FileResult): void {
  const mark = r.failed ? '\x1b[31m✘\x1b[39m' : '\x1b[32m✔\x1b[39m';
  process.stdout.write(`\n${mark} \x1b[1m${r.name}\x1b[22m  ${r.passed}/${r.total} in ${(r.wallMs / 1000).toFixed(1)} s\n${r.output.trimEnd()}\n`);
}

function summarize(): void {
  const sum = (k: 'total' | 'passed' | 'skipped' | 'failed') => results.reduce((n, r) => n + r[k], 0);
  const out: string[] = [''];
  const skippedLines = results.flatMap((r) => r.output.split('\n').filter((l) => l.includes('SKIPPED')).map((l) => `  ${l.trim()}`));
  if (skippedLines.length) out.push('\x1b[33mSuites that could not run:\x1b[39m', ...skippedLines, '');
  if (checked) out.push(checked.code ? `\x1b[31mtsc --noEmit failed:\x1b[39m\n${checked.output.trimEnd()}\n` : `  Types:     tsc --noEmit passed (done at ${(checked.endedMs / 1000).toFixed(1)} s)`);
  out.push(
    `  Files:     ${results.length}`,
    `  Total:     ${sum('total')}`,
    `  Passed:    ${sum('passed')}`,
    `  Skipped:   ${sum('skipped')}`,
    `  Failed:    ${sum('failed')}`,
    `  Duration:  ${((Date.now() - started) / 1000).toFixed(1)} s with ${workers} workers`,
  );
  const failedFiles = results.filter((r) => r.failed);
  if (failedFiles.length) out.push('', '\x1b[31mFailed files:\x1b[39m', ...failedFiles.map((r) => `  ${r.name}`));
  process.stdout.write(`${out.join('\n')}\n\n`);
}

function reportTimes(log: string): void {
  const children = childCpuByFile(log, results);
  const rows = results
    .map((r) => ({ name: r.name, wall: r.wallMs, cpu: r.cpuMs, spawned: children.get(r.name) ?? 0 }))
    .sort((a, b) => b.wall - a.wall);
  const s = (ms: number) => (ms / 1000).toFixed(1).padStart(7);
  const lines = ['', '  wall s   CPU s  spawned CPU s  file', ...rows.slice(0, 25).map((r) => `${s(r.wall)} ${s(r.cpu)} ${s(r.spawned)}        ${r.name}`)];
  const total = (k: 'wall' | 'cpu' | 'spawned') => rows.reduce((n, r) => n + r[k], 0);
  lines.push(`${s(total('wall'))} ${s(total('cpu'))} ${s(total('spawned'))}        all ${rows.length} files (wall summed over workers)`);
  process.stdout.write(`${lines.join('\n')}\n\n`);
  if (whole) writeFileSync(DURATIONS, `${JSON.stringify(Object.fromEntries(rows.map((r) => [r.name, r.wall])), null, 2)}\n`);
}
