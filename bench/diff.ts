/**
 * `npm run bench:diff -- --base <git-rev> [--rules 1000]` (rt-diff): the outcome of every
 * request through this tree's policy compiler and strict host, compared with the same
 * request through another revision's (checked out with `git worktree add` into a temp
 * directory). A speed change must not change a single outcome: decision, status, reply
 * headers and body, the request as forwarded, and every log line.
 *
 * The corpus, the same for both builds (fixed clock, seeded random numbers), at host log
 * levels info and warn (the filter skips formatting its decision line when info is dropped):
 * - ordinary bench requests (bench/gen-policy.ts) for every rule, with and without a
 *   fingerprint, from an unknown caller, with another method;
 * - fuzzed paths: random bytes drawn from what path normalization treats specially;
 * - corrupted metadata: the encoded jwt_authn metadata of a bench request with random bytes
 *   overwritten, handed to the filter as the raw `metadata` attribute.
 * Exit 0 when every outcome is the same, 1 with the first differences otherwise.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_SERVICE, caller, generatePolicy, requestFor } from './gen-policy.ts';
import { fingerprintClaims } from '../testing/fingerprint.ts';
import { encodeMetadata } from '../host/metadata-pb.ts';
import type { FilterRequest, Outcome } from '../host/index.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
/** Where a tree keeps its compiler and host (one place to change when the tree moves). */
const COMPILER = 'compiler/index.ts';
/** The strict host's entry: host/ since the layout move, agent/host/ before it (a --base may predate it). */
const HOSTS = ['host/index.ts', 'agent/host/index.ts'];
const LEVELS = ['info', 'warn'] as const;
const FUZZED = 3_000;
const CORRUPTED = 3_000;
/** Every request is decided at this instant (seconds), fingerprints are issued at it. */
const NOW = 1_800_000_000;
const SHOWN = 5;

/** mulberry32: the same numbers for the same seed, in both builds' corpus. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A bench request with a fingerprint issued at NOW and a jti unique in the corpus. */
function benchRequest(i: number, jti: string, fingerprinted = true): FilterRequest {
  const r = requestFor(i, 0, fingerprinted);
  const user = r.metadata['envoy.filters.http.jwt_authn'].user;
  const fingerprint = fingerprintClaims({ caller: caller(i), service: BENCH_SERVICE, method: r.method, path: r.path, jti, now: NOW });
  return { ...r, metadata: { 'envoy.filters.http.jwt_authn': fingerprinted ? { user, fingerprint } : { user } } };
}

function corpus(rules: number): { label: string; request: FilterRequest }[] {
  const out: { label: string; request: FilterRequest }[] = [];
  for (let i = 0; i < rules; i++) {
    out.push({ label: `rule ${i}`, request: benchRequest(i, `ok-${i}`) });
    out.push({ label: `rule ${i} without fingerprint`, request: benchRequest(i, '', false) });
    out.push({ label: `rule ${i} unknown caller`, request: { ...benchRequest(i, `stranger-${i}`), source: { principal: 'spiffe://bench.example/ns/x/sa/stranger' } } });
    out.push({ label: `rule ${i} other method`, request: { ...benchRequest(i, `method-${i}`), method: 'OPTIONS' } });
  }
  const next = random(1);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]!;
  const PIECES = ['/', '//', '.', '..', '%2e', '%2E', '%2f', '%2F', '%5c', '%00', '%', '%zz', '\\', ';', '?', '#', 'a', 'res1', 'api', 'v1', '42', '~', ' ', '\u00e9', '*'];
  for (let k = 0; k < FUZZED; k++) {
    const i = k % rules;
    const request = benchRequest(i, `fuzz-${k}`);
    const tail = Array.from({ length: 1 + Math.floor(next() * 8) }, () => pick(PIECES)).join('');
    out.push({ label: `fuzzed path ${k}`, request: { ...request, path: `/api/v${i % 3}/res${i}${tail}` } });
  }
  for (let k = 0; k < CORRUPTED; k++) {
    const request = benchRequest(k % rules, `corrupt-${k}`);
    const encoded = encodeMetadata(request.metadata as never);
    if (!encoded) throw new Error('the bench request metadata must encode');
    const bytes = encoded.slice(); // the encoder returns a view of its scratch buffer
    for (let n = 1 + Math.floor(next() * 3); n > 0; n--) bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
    out.push({ label: `corrupted metadata ${k}`, request: { ...request, metadata: undefined, properties: { metadata: bytes } } });
  }
  return out;
}

/** What a caller and the upstream see of one request, and what the filter logged. */
function summary(o: Outcome): string {
  const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');
  return JSON.stringify({
    kind: o.kind, status: o.status, details: o.details, headers: o.headers, body: text(o.body),
    upstream: o.upstreamRequest && { headers: o.upstreamRequest.headers, body: text(o.upstreamRequest.body) },
    logs: o.logs.map((l) => `${l.level} ${l.message}`),
  });
}

/** Outcomes of the corpus through the compiler and host found in `tree`. */
async function outcomes(tree: string, rules: number, requests: ReturnType<typeof corpus>): Promise<string[]> {
  const { compilePolicy } = await import(path.join(tree, COMPILER));
  const host = HOSTS.find((h) => existsSync(path.join(tree, h)));
  if (!host) throw new Error(`no strict host in ${tree} (looked for ${HOSTS.join(', ')})`);
  const { loadFilter } = await import(path.join(tree, host));
  const compiled = await compilePolicy(`bench-${rules}.policy.json`, JSON.stringify(generatePolicy(rules)));
  if (!compiled.ok) throw new Error(`${tree}: the bench policy does not compile`);
  const results: string[] = [];
  for (const level of LEVELS) {
    // A VM id per run: each starts with an empty replay store, as the other build's does.
    const filter = await loadFilter(compiled.wasm, { logLevel: level, vmId: `rt-diff-${level}`, clock: () => BigInt(NOW) * 1_000_000_000n });
    for (const { request } of requests) results.push(summary(await filter.handleRequest(request)));
  }
  return results;
}

/** Checks out `rev` beside this tree (sharing its node_modules); removed by the caller. */
function checkout(rev: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'palisade-rt-diff-'));
  execFileSync('git', ['worktree', 'add', '--detach', '--quiet', dir, rev], { cwd: ROOT, stdio: 'inherit' });
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

const { values } = parseArgs({ options: { base: { type: 'string' }, rules: { type: 'string', default: '1000' } } });
if (!values.base) {
  process.stderr.write('usage: npm run bench:diff -- --base <git-rev> [--rules N]\n');
  process.exit(2);
}
const rules = Number(values.rules);
const requests = corpus(rules);
const base = checkout(values.base);
let differences = 0;
try {
  const [before, after] = [await outcomes(base, rules, requests), await outcomes(ROOT, rules, requests)];
  for (let k = 0; k < after.length; k++) {
    if (before[k] === after[k]) continue;
    if (++differences <= SHOWN) {
      const { label } = requests[k % requests.length]!;
      console.log(`${label} at ${LEVELS[Math.floor(k / requests.length)]}:\n  ${values.base}: ${before[k]}\n  this tree: ${after[k]}`);
    }
  }
  console.log(`${after.length - differences} of ${after.length} outcomes the same (${requests.length} requests x ${LEVELS.join(', ')}; ${rules} rules, ${FUZZED} fuzzed paths, ${CORRUPTED} corrupted metadata messages)`);
} finally {
  execFileSync('git', ['worktree', 'remove', '--force', base], { cwd: ROOT });
}
process.exit(differences ? 1 : 0);
