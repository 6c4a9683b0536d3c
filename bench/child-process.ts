/**
 * Processes a bench starts and measures from outside: output to a file (never a pipe this
 * process would have to drain while it generates load), readiness from what the process
 * prints, CPU time from /proc/<pid>/stat (every thread of the process, ended ones included).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { once } from 'node:events';

export interface Child {
  process: ChildProcess;
  /** Everything it printed (stdout and stderr), and keeps printing. */
  logFile: string;
}

/**
 * Starts `node ...args` and waits until `ready` finds what it needs in the output (a URL),
 * or fails with the output's tail when the process exits or 60 s pass first.
 */
export async function startChild<T>(args: string[], logFile: string, ready: (output: string) => T | undefined): Promise<Child & { ready: T }> {
  const fd = openSync(logFile, 'w');
  const child = spawn(process.execPath, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  let exited = false;
  child.once('exit', () => (exited = true));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const found = ready(readFileSync(logFile, 'utf8'));
    if (found !== undefined) return { process: child, logFile, ready: found };
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${args.join(' ')} did not start:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Stops the process with `signal` and waits for it to exit. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exit = once(child, 'exit');
  child.kill(signal);
  await exit;
}

/** CPU time (µs, user + system, all threads) the process has used, or null where /proc is missing. */
export function cpuMicros(pid: number): number | null {
  const file = `/proc/${pid}/stat`;
  if (!existsSync(file)) return null;
  const stat = readFileSync(file, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100; // utime + stime, in USER_HZ ticks
}
