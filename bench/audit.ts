/**
 * The audit log's own costs: entries appended per second (encoded,
 * hashed into the tree, batched, written) on one core, `verify` speed with and without the
 * per-entry fingerprint signature checks, and bytes per entry. The sidecar's throughput
 * with the log on and off is measured in bench/sidecar.ts, in the same run as its baseline.
 *
 * The log is the agent's with its defaults (checkpoint every 1,000 entries or second, fsync
 * before each); every entry carries a real fingerprint JWS, with the claims the sidecar
 * verified, as the sidecar appends it. Append and verify run in this
 * process, the sources through tsx (esbuild's transform, as every benchmark of `npm run
 * bench`); the full verify is also timed as users run it: `palisade audit verify` in its own
 * process (dist/ when built), process start included. The ceiling of a full verify is ECDSA
 * P-256: measured here too, one node:crypto verify after another on one thread.
 * Run alone: node --import tsx bench/audit.ts   (BENCH_AUDIT_ENTRIES, BENCH_AUDIT_VERIFY_ROUNDS)
 */
import 'reflect-metadata';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { signedDecisions } from '../test/audit/decisions.ts';
import { AuditLog } from '../audit/log.ts';
import { verifyLog } from '../audit/verify.ts';
import { verify } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { writeFileSync } from 'node:fs';

const ENTRIES = Number(process.env.BENCH_AUDIT_ENTRIES ?? 200_000);
/** Times each verify runs (the fastest is reported). */
const VERIFY_ROUNDS = Number(process.env.BENCH_AUDIT_VERIFY_ROUNDS ?? 3);
/** Distinct fingerprints (signing is the caller's cost, not the log's); reused round robin. */
const SIGNED = 5_000;

const { ca, service, cert, ref, fingerprints, decided } = await signedDecisions(SIGNED);

const dir = mkdtempSync(path.join(tmpdir(), 'palisade-bench-audit-'));
try {
  const log = AuditLog.open({ dir, signer: { svid: () => service } });
  const entries = Array.from({ length: ENTRIES }, (_, i) => decided(i));
  // As under load: many requests append in the same turn of the event loop, then wait.
  const WAVE = 256;
  const started = performance.now();
  const cpu = process.cpuUsage();
  for (let i = 0; i < ENTRIES; i += WAVE) {
    const wave: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(ENTRIES, i + WAVE); j++) wave.push(log.append(entries[j]!, ref));
    await Promise.all(wave);
  }
  const appendMs = performance.now() - started;
  // CPU time of this process: on a machine shared with other work, wall time says more about the neighbours.
  const appendCpuMs = cpuMs(process.cpuUsage(cpu));
  await log.close();
  const bytes = readdirSync(path.join(dir, 'segments')).reduce((sum, f) => sum + statSync(path.join(dir, 'segments', f)).size, 0);

  // Each verify VERIFY_ROUNDS times, the two kinds in turn, the fastest kept: on a shared
  // machine one run says as much about the neighbours as about verify.
  const timedVerify = async (signatures: boolean) => {
    const started = performance.now();
    const cpu = process.cpuUsage();
    const verified = await verifyLog(dir, ca.certPem, undefined, { signatures });
    if (verified.entries !== ENTRIES) throw new Error(`verified ${verified.entries} of ${ENTRIES}`);
    return { verified, ms: performance.now() - started, cpuMs: cpuMs(process.cpuUsage(cpu)) };
  };
  const fastest = (runs: Awaited<ReturnType<typeof timedVerify>>[]) => runs.reduce((a, b) => (b.ms < a.ms ? b : a));
  const rounds: { structure: Awaited<ReturnType<typeof timedVerify>>; full: Awaited<ReturnType<typeof timedVerify>> }[] = [];
  for (let i = 0; i < VERIFY_ROUNDS; i++) rounds.push({ structure: await timedVerify(false), full: await timedVerify(true) });
  const structure = fastest(rounds.map((r) => r.structure));
  const full = fastest(rounds.map((r) => r.full));
  const bundleFile = path.join(dir, 'bundle.pem');
  writeFileSync(bundleFile, ca.certPem);
  const cliStarted = performance.now();
  const cli = spawnSync(process.execPath, [fileURLToPath(new URL('../bin/palisade.js', import.meta.url)), 'audit', 'verify', dir, '--bundle', bundleFile], { encoding: 'utf8' });
  const cliMs = performance.now() - cliStarted;
  if (cli.status !== 0 || !cli.stdout.includes(`verified ${ENTRIES} entries`)) throw new Error(`palisade audit verify: ${cli.stderr}`);
  const ran = cli.stderr.includes('running the TypeScript sources') ? 'the sources through tsx: dist/ is not current' : 'dist/';
  const ecdsa = ecdsaPerSecond(fingerprints[0]!);
  const threads = availableParallelism();

  const rate = (n: number, ms: number) => Math.round((n / ms) * 1000).toLocaleString('en');
  console.log(`${ENTRIES.toLocaleString('en')} entries (format v2) with a real fingerprint (and its verified claims, as the sidecar appends it), user claims and caller reference each; the log's defaults: checkpoint every 1,000 entries or second, fsync before each checkpoint; sources through tsx; each verify the fastest of ${VERIFY_ROUNDS}`);
  console.log('| | wall clock | per CPU second (all threads) | target |');
  console.log('| --- | ---: | ---: | ---: |');
  console.log(`| append (encode, hash, batch, write) | ${rate(ENTRIES, appendMs)} entries/s | ${rate(ENTRIES, appendCpuMs)} | ≥ 100,000/s |`);
  console.log(`| verify, the log's structure (entries, chain, tree, checkpoints, fingerprint claims and certificates; no fingerprint ECDSA) | ${rate(ENTRIES, structure.ms)} entries/s | ${rate(ENTRIES, structure.cpuMs)} | ≥ 200,000/s |`);
  console.log(`| verify, everything incl. every fingerprint signature (ECDSA, helper threads), as \`palisade audit verify\` | ${rate(ENTRIES, full.ms)} entries/s | ${rate(ENTRIES, full.cpuMs)} | ceiling: ECDSA, ${rate(ecdsa * threads, 1000)}/s on ${threads} cores |`);
  console.log(`| \`palisade audit verify\` itself (${ran}; process start included) | ${rate(ENTRIES, cliMs)} entries/s | | |`);
  console.log(`| ECDSA P-256 verify, node:crypto, one thread | ${rate(ecdsa, 1000)}/s | | |`);
  console.log(`| bytes per entry on disk | ${Math.round(bytes / ENTRIES)} | |`);
  console.log(`| checkpoints | ${full.verified.checkpoints} | |`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/** ES256 verifications per second on one thread (node:crypto, one after another), of a real fingerprint. */
function ecdsaPerSecond(jws: string): number {
  const end = jws.lastIndexOf('.');
  const signed = Buffer.from(jws.slice(0, end));
  const signature = Buffer.from(jws.slice(end + 1), 'base64url');
  const key = { key: cert.publicKey, dsaEncoding: 'ieee-p1363' } as const;
  const started = performance.now();
  let n = 0;
  for (; performance.now() - started < 1000; n++) if (!verify('sha256', signed, key, signature)) throw new Error('the fingerprint does not verify');
  return (n * 1000) / (performance.now() - started);
}

function cpuMs(used: NodeJS.CpuUsage): number {
  return (used.user + used.system) / 1000;
}
