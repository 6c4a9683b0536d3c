/**
 * `npm run bench`: every benchmark, each in its own process so one engine's heap or JIT
 * state never colours another's figures. Decision latency is reported as ratios against
 * Cedar and Casbin measured in the same run on the same machine.
 */
import { execFileSync, spawnSync } from 'node:child_process';

const SIZES = [10, 100, 1_000, 10_000];
const ENGINES = ['palisade', 'palisade-decision', 'cedar', 'casbin'] as const;
const tsx = ['--import', 'tsx'];

interface Latency { engine: string; rules: number; p50Us: number; p99Us: number; samples: number }

function decision(engine: string, rules: number): Latency {
  const out = execFileSync(process.execPath, [...tsx, 'bench/decision.ts', engine, String(rules)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

/**
 * Ratios use palisade with fingerprints (the default configuration, and the more work);
 * "decision only" is the same filter with `{"fingerprint":"off"}`.
 */
function decisionTable(): void {
  console.log('## Decision latency (µs per decision, through each engine\'s own API)');
  const rows: Latency[][] = SIZES.map((n) => ENGINES.map((e) => decision(e, n)));
  const fmt = (x: number) => x.toFixed(x < 10 ? 2 : 0);
  const pair = (l: Latency) => `${fmt(l.p50Us)} / ${fmt(l.p99Us)}`;
  console.log('| rules | palisade p50 / p99 (fingerprint checked) | palisade decision only | cedar | casbin | vs cedar (p50) | vs casbin (p50) |');
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [p, d, c, b] of rows) {
    console.log(`| ${p.rules} | ${pair(p)} | ${pair(d)} | ${pair(c)} | ${pair(b)} | ${(c.p50Us / p.p50Us).toFixed(0)}× | ${(b.p50Us / p.p50Us).toFixed(0)}× |`);
  }
  const at = (row: number, col: number) => rows[row][col].p50Us;
  const last = rows.length - 1;
  console.log(`\npalisade p50 at 10,000 rules / at 10 rules: ${(at(last, 0) / at(0, 0)).toFixed(2)} with fingerprints, ${(at(last, 1) / at(0, 1)).toFixed(2)} decision only (target ≤ 2)`);
  console.log(`palisade p50 at 1,000 rules: ${fmt(at(2, 0))} µs with fingerprints, ${fmt(at(2, 1))} µs decision only (target ≤ 5 µs)\n`);
}

function script(file: string): void {
  console.log(`## ${file}`);
  const r = spawnSync(process.execPath, [...tsx, file], { stdio: 'inherit' });
  if (r.status !== 0) console.log(`(${file} exited with ${r.status})`);
  console.log('');
}

decisionTable();
for (const file of ['bench/compile.ts', 'bench/tooling.ts', 'bench/policy-diff.ts', 'bench/learn.ts', 'bench/control.ts', 'bench/dashboard.ts', 'bench/svid.ts', 'bench/sidecar.ts', 'bench/grpc.ts', 'bench/edge.ts', 'bench/startup.ts', 'bench/audit.ts']) script(file);
