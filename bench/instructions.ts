/**
 * `npm run bench:instructions [-- --rules 1000 --decisions 2000 --fingerprint off]`:
 * instructions per decision (the compiled filter in the strict host, marshalling
 * included) counted by valgrind's callgrind, which unlike a clock does not care what else
 * the machine is doing. Two runs under callgrind, both loading the filter and deciding
 * WARMUP requests (so V8 has compiled the host's hot path): the harness stops there, the
 * other decides DECISIONS more; the difference divided by DECISIONS is the steady-state
 * figure, start-up, tsx and JIT compilation left out. Compare figures from the same machine and Node version.
 *
 * Without valgrind it says so and exits 0 (nothing to measure is not a failure).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { generatePolicy, requestFor } from './gen-policy.ts';

const { values } = parseArgs({
  options: {
    rules: { type: 'string', default: '1000' },
    decisions: { type: 'string', default: '2000' },
    warmup: { type: 'string', default: '2000' },
    fingerprint: { type: 'string', default: 'on' },
    // Internal: the process callgrind runs.
    run: { type: 'string' },
    harness: { type: 'boolean', default: false },
  },
});
const rules = Number(values.rules);
const decisions = Number(values.decisions);
const warmup = Number(values.warmup);
const fingerprints = values.fingerprint !== 'off';

/** Under callgrind: load the filter, decide the warm-up requests, then the measured ones unless this is the harness run. */
async function decide(wasmFile: string): Promise<void> {
  const { loadFilter } = await import('../host/index.ts');
  const filter = await loadFilter(readFileSync(wasmFile), { logLevel: 'warn', configuration: fingerprints ? undefined : '{"fingerprint":"off"}' });
  const requests = Array.from({ length: warmup + decisions }, (_, i) => requestFor(i % rules, i, fingerprints));
  for (const request of requests.slice(0, values.harness ? warmup : undefined)) await filter.handleRequest(request);
}

/**
 * Instructions (Ir) of one callgrind run's main thread: the one deciding. V8's compiler and
 * GC helper threads work whenever they get to, so they are left out of both runs.
 */
function instructions(dir: string, wasmFile: string, harness: boolean): number {
  const out = path.join(dir, `callgrind.${harness ? 'harness' : 'decisions'}.%p`);
  const args = ['--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${out}`, process.execPath,
    // Optimized wasm from the first call, not Liftoff's code for a while then TurboFan's.
    '--no-liftoff', '--import', 'tsx', import.meta.filename,
    '--run', wasmFile, '--rules', String(rules), '--decisions', String(decisions), '--warmup', String(warmup), '--fingerprint', fingerprints ? 'on' : 'off',
    ...(harness ? ['--harness'] : [])];
  const r = spawnSync('valgrind', args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`valgrind exited ${r.status}: ${r.stderr.slice(-2000)}`);
  const main = readdirSync(dir).find((f) => f.startsWith(`callgrind.${harness ? 'harness' : 'decisions'}.`) && f.endsWith('-01'));
  const total = main && /^(?:summary|totals):\s+(\d+)/m.exec(readFileSync(path.join(dir, main), 'utf8'))?.[1];
  if (!total) throw new Error('callgrind wrote no main-thread summary');
  return Number(total);
}

if (values.run) {
  await decide(values.run);
  process.exit(0);
}
if (spawnSync('valgrind', ['--version']).error) {
  console.log('valgrind is not installed: no instruction counts (install valgrind to measure them)');
  process.exit(0);
}
const dir = mkdtempSync(path.join(os.tmpdir(), 'palisade-callgrind-'));
try {
  const { compilePolicy } = await import('../compiler/index.ts');
  const compiled = await compilePolicy(`bench-${rules}.policy.json`, JSON.stringify(generatePolicy(rules)));
  if (!compiled.ok) throw new Error('the bench policy does not compile');
  const wasmFile = path.join(dir, 'bench.wasm');
  writeFileSync(wasmFile, compiled.wasm);
  const node = execFileSync(process.execPath, ['--version'], { encoding: 'utf8' }).trim();
  const harness = instructions(dir, wasmFile, true);
  const total = instructions(dir, wasmFile, false);
  console.log(`${Math.round((total - harness) / decisions).toLocaleString('en')} instructions per decision ` +
    `(${rules} rules, fingerprint ${fingerprints ? 'on' : 'off'}, ${decisions} decisions after ${warmup}; callgrind, Node ${node}; ` +
    `main thread: harness ${harness.toLocaleString('en')}, with decisions ${total.toLocaleString('en')})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
