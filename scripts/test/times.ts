/**
 * Which test file spent the CPU of the processes a run spawned: each process the exit hook
 * (cpu-hook.cjs) logged is traced up its parents to the worker that ran the file, and
 * charged to the file that worker was running when the process started. A process killed by
 * a signal it does not handle logs nothing: its CPU is missing from the figures.
 */
import { readFileSync } from 'node:fs';

/** Where and when a file ran. */
export interface Placed {
  name: string;
  worker: number;
  start: number;
  end: number;
}

interface ProcessLine {
  pid: number;
  ppid: number;
  start: number;
  user: number;
  system: number;
}

/** CPU milliseconds of spawned processes, by test file name. */
export function childCpuByFile(log: string, files: Placed[]): Map<string, number> {
  const lines: ProcessLine[] = readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const byPid = new Map(lines.map((l) => [l.pid, l]));
  const workers = new Set(files.map((f) => f.worker));
  const charged = new Map<string, number>();
  for (const line of lines) {
    if (workers.has(line.pid)) continue;
    let worker: number | undefined;
    for (let p: ProcessLine | undefined = line; p; p = byPid.get(p.ppid)) {
      if (workers.has(p.ppid)) worker = p.ppid;
    }
    const file = files.find((f) => f.worker === worker && line.start >= f.start && line.start <= f.end);
    if (file) charged.set(file.name, (charged.get(file.name) ?? 0) + (line.user + line.system) / 1000);
  }
  return charged;
}
