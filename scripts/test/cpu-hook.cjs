/**
 * Loaded into every node process of a test run through
 * `NODE_OPTIONS=--require scripts/test/cpu-hook.cjs` with PALISADE_TEST_TIMES=<log>: on exit
 * each process appends one JSON line (pid, parent pid, argv, start and end wall-clock, CPU
 * used), so the CPU of `palisade` children, agents and CAs a suite spawns is counted, not
 * only the runner's (scripts/test/times.ts charges each to the file that spawned it).
 * CommonJS because --require loads it before any ESM loader.
 */
'use strict';
const fs = require('node:fs');

const log = process.env.PALISADE_TEST_TIMES;
if (log) {
  const start = Date.now();
  process.on('exit', () => {
    const cpu = process.cpuUsage();
    const line = { pid: process.pid, ppid: process.ppid, argv: process.argv.slice(1), start, end: Date.now(), user: cpu.user, system: cpu.system };
    fs.appendFileSync(log, JSON.stringify(line) + '\n');
  });
}
