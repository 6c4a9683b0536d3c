/**
 * The audit log's own costs: entries appended per second (encoded,
 * hashed into the tree, batched, written) on one core, `verify` speed with and without the
 * per-entry fingerprint signature checks, and bytes per entry. The sidecar's throughput
 * with the log on and off is measured in bench/sidecar.ts, in the same run as its baseline.
 *
 * The log is the agent's with its defaults (checkpoint every 1,000 entries or second, fsync
 * before each); every entry carries a real fingerprint JWS, with the claims the sidecar
 * verified, as the sidecar appends it. The append runs in a process of its own
 * (bench/audit-append.ts) started with the V8 flags `palisade agent` runs with
 * (AGENT_V8_FLAGS), and also times each part of an append alone; verify runs in this
 * process; both the sources through tsx (esbuild's transform, as every benchmark of `npm run
 * bench`); the full verify is also timed as users run it: `palisade audit verify` in its own
 * process (dist/ when built), process start included. The ceiling of a full verify is ECDSA
 * P-256: measured here too, one node:crypto verify after another on one thread.
 * The target is per core, so the appender runs pinned to one (`taskset -c`, the first core
 * this process may use) and its rate is entries per second on that core; where taskset is
 * missing it runs unpinned, says so, and the rate to hold against the target is the one per
 * CPU second (GC helpers and the fsync thread then run on other cores).
 * Run alone: node --import tsx bench/audit.ts   (BENCH_AUDIT_ENTRIES, BENCH_AUDIT_VERIFY_ROUNDS)
 */
import 'reflect-metadata';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { signedDecisions } from '../test/audit/decisions.ts';
import { verifyLog } from '../audit/verify.ts';
import { verify } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ENTRIES = Number(process.env.BENCH_AUDIT_ENTRIES ?? 200_000);
/** Times each verify runs (the fastest is reported). */
const VERIFY_ROUNDS = Number(process.env.BENCH_AUDIT_VERIFY_ROUNDS ?? 3);
/** What cli/daemon-heap.ts (tuneDaemonHeap) sets before `palisade agent` starts: keep in step with it. */
const AGENT_V8_FLAGS = ['--semi-space-growth-factor=1', '--no-liftoff'];

const dir = mkdtempSync(path.join(tmpdir(), 'palisade-bench-audit-'));
try {
  const core = oneCore();
  const command = [process.execPath, ...AGENT_V8_FLAGS, '--import', 'tsx', fileURLToPath(new URL('./audit-append.ts', import.meta.url)), dir, String(ENTRIES)];
  if (core !== undefined) command.unshift('taskset', '-c', core);
  const appender = spawnSync(command[0]!, command.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (appender.status !== 0) throw new Error(`bench/audit-append.ts exited with ${appender.status}`);
  const append = JSON.parse(appender.stdout) as { ms: number; cpuMs: number; parts: { encode: number; leaf: number; tree: number } };
  const bundlePem = readFileSync(path.join(dir, 'bundle.pem'), 'utf8');
  const bytes = readdirSync(path.join(dir, 'segments')).reduce((sum, f) => sum + statSync(path.join(dir, 'segments', f)).size, 0);

  // Each verify VERIFY_ROUNDS times, the two kinds in turn, the fastest kept: on a shared
  // machine one run says as much about the neighbours as about verify.
  const timedVerify = async (signatures: boolean) => {
    const started = performance.now();
    const cpu = process.cpuUsage();
    const verified = await verifyLog(dir, bundlePem, undefined, { signatures });
    if (verified.entries !== ENTRIES) throw new Error(`verified ${verified.entries} of ${ENTRIES}`);
    return { verified, ms: performance.now() - started, cpuMs: cpuMs(process.cpuUsage(cpu)) };
  };
  const fastest = (runs: Awaited<ReturnType<typeof timedVerify>>[]) => runs.reduce((a, b) => (b.ms < a.ms ? b : a));
  const rounds: { structure: Awaited<ReturnType<typeof timedVerify>>; full: Awaited<ReturnType<typeof timedVerify>> }[] = [];
  for (let i = 0; i < VERIFY_ROUNDS; i++) rounds.push({ structure: await timedVerify(false), full: await timedVerify(true) });
  const structure = fastest(rounds.map((r) => r.structure));
  const full = fastest(rounds.map((r) => r.full));
  const bundleFile = path.join(dir, 'bundle.pem');
  const cliStarted = performance.now();
  const cli = spawnSync(process.execPath, [fileURLToPath(new URL('../bin/palisade.js', import.meta.url)), 'audit', 'verify', dir, '--bundle', bundleFile], { encoding: 'utf8' });
  const cliMs = performance.now() - cliStarted;
  if (cli.status !== 0 || !cli.stdout.includes(`verified ${ENTRIES} entries`)) throw new Error(`palisade audit verify: ${cli.stderr}`);
  const ran = cli.stderr.includes('running the TypeScript sources') ? 'the sources through tsx: dist/ is not current' : 'dist/';
  const ecdsa = ecdsaPerSecond(await signedDecisions(1));
  const threads = availableParallelism();

  const rate = (n: number, ms: number) => Math.round((n / ms) * 1000).toLocaleString('en');
  const pinned = core === undefined ? 'unpinned (no taskset here): hold the rate per CPU second against the target' : `pinned to one core (taskset -c ${core})`;
  console.log(`${ENTRIES.toLocaleString('en')} entries (format v2) with a real fingerprint (and its verified claims, as the sidecar appends it), user claims and caller reference each; the log's defaults: checkpoint every 1,000 entries or second, fsync before each checkpoint; append under the agent's V8 flags (${AGENT_V8_FLAGS.join(' ')}), ${pinned}; sources through tsx; each verify the fastest of ${VERIFY_ROUNDS}`);
  console.log('| | wall clock | per CPU second (all threads) | target |');
  console.log('| --- | ---: | ---: | ---: |');
  console.log(`| append (encode, hash, batch, write), ${core === undefined ? 'unpinned' : 'on one core'} | ${rate(ENTRIES, append.ms)} entries/s | ${rate(ENTRIES, append.cpuMs)} | ≥ 100,000/s on one core |`);
  const { encode, leaf, tree } = append.parts;
  const us = (n: number) => `${n.toFixed(2)} µs`;
  console.log(`| append, CPU per entry: all / encode the line / copy to the batch and leaf hash / tree (node hashes) / the rest (batches, write(2), checkpoints, GC) | ${us((append.cpuMs * 1000) / ENTRIES)} / ${us(encode)} / ${us(leaf)} / ${us(tree)} / ${us((append.cpuMs * 1000) / ENTRIES - encode - leaf - tree)} | | |`);
  console.log(`| verify, the log's structure (entries, chain, tree, checkpoints, fingerprint claims and certificates; no fingerprint ECDSA) | ${rate(ENTRIES, structure.ms)} entries/s | ${rate(ENTRIES, structure.cpuMs)} | ≥ 200,000/s |`);
  console.log(`| verify, everything incl. every fingerprint signature (ECDSA, helper threads), as \`palisade audit verify\` | ${rate(ENTRIES, full.ms)} entries/s | ${rate(ENTRIES, full.cpuMs)} | ceiling: ECDSA, ${rate(ecdsa * threads, 1000)}/s on ${threads} cores |`);
  console.log(`| \`palisade audit verify\` itself (${ran}; process start included) | ${rate(ENTRIES, cliMs)} entries/s | | |`);
  console.log(`| ECDSA P-256 verify, node:crypto, one thread | ${rate(ecdsa, 1000)}/s | | |`);
  console.log(`| bytes per entry on disk | ${Math.round(bytes / ENTRIES)} | |`);
  console.log(`| checkpoints | ${full.verified.checkpoints} | |`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/** The first core this process may run on, as taskset names it; undefined when taskset is not there to pin to it. */
function oneCore(): string | undefined {
  const affinity = spawnSync('taskset', ['-cp', String(process.pid)], { encoding: 'utf8' });
  return affinity.status === 0 ? /:\s*(\d+)/.exec(affinity.stdout)?.[1] : undefined;
}

/** ES256 verifications per second on one thread (node:crypto, one after another), of a real fingerprint. */
function ecdsaPerSecond({ fingerprints: [jws], cert }: Awaited<ReturnType<typeof signedDecisions>>): number {
  const end = jws!.lastIndexOf('.');
  const signed = Buffer.from(jws!.slice(0, end));
  const signature = Buffer.from(jws!.slice(end + 1), 'base64url');
  const key = { key: cert.publicKey, dsaEncoding: 'ieee-p1363' } as const;
  const started = performance.now();
  let n = 0;
  for (; performance.now() - started < 1000; n++) if (!verify('sha256', signed, key, signature)) throw new Error('the fingerprint does not verify');
  return (n * 1000) / (performance.now() - started);
}

function cpuMs(used: NodeJS.CpuUsage): number {
  return (used.user + used.system) / 1000;
}
