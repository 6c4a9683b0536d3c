/**
 * Loaded into every node process of a test run through
 * `NODE_OPTIONS=--require scripts/test/cpu-hook.cjs` with PALISADE_TEST_TIMES=<log>: on exit
 * each process appends one JSON line (pid, parent pid, argv, start and end wall-clock, CPU
 * used), so the CPU of `palisade` children, agents and CAs a suite spawns is counted, not
 * only the runner's. In a plain uvu run the runner also marks when each test file starts
 * (uvu prints the file name as a header), so `npm run test:times` can split the time by file.
 * CommonJS because --require loads it before any ESM loader.
 */
'use strict';
const fs = require('node:fs');

const log = process.env.PALISADE_TEST_TIMES;
if (log) {
  const start = Date.now();
  const marks = [];
  const isUvu = process.argv.some((a) => /uvu[\\/]bin\.js$/.test(a));
  if (isUvu) {
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = (chunk, ...rest) => {
      // uvu writes each file's header as one chunk: the name, underlined, then a newline.
      const text = String(chunk).replace(/\x1b\[[0-9;]*m/g, '');
      if (/^[\w@./-]+\.test\.ts\n$/.test(text)) marks.push({ file: text.trim(), at: Date.now(), cpu: process.cpuUsage() });
      return write(chunk, ...rest);
    };
  }
  process.on('exit', () => {
    const cpu = process.cpuUsage();
    const line = { pid: process.pid, ppid: process.ppid, argv: process.argv.slice(1), start, end: Date.now(), user: cpu.user, system: cpu.system };
    if (marks.length) line.marks = marks;
    fs.appendFileSync(log, JSON.stringify(line) + '\n');
  });
}
