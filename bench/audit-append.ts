/**
 * bench/audit.ts's append part, in a process of its own so that it runs under the V8 flags
 * `palisade agent` runs with (bench/audit.ts starts it with them). Appends ENTRIES entries
 * to a new log in DIR as the sidecar does, then times each part of an append alone on the
 * same entries; prints one JSON line (bench/audit.ts reads it) and leaves the log and its
 * trust bundle (DIR/bundle.pem) for the verify part.
 * Usage: node [flags] --import tsx bench/audit-append.ts DIR ENTRIES
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { signedDecisions } from '../test/audit/decisions.ts';
import { AuditLog } from '../audit/log.ts';
import { encodeEntry } from '../audit/entry.ts';
import { MerkleTree, leafHashAt } from '../audit/merkle.ts';

const [dir, count] = process.argv.slice(2);
const ENTRIES = Number(count);
/** Distinct requests (signing is the caller's cost, not the log's), appended round robin: the inputs do not pile up in the heap as they would not in the sidecar. */
const SIGNED = 5_000;
/** As under load: many requests append in the same turn of the event loop, then wait. */
const WAVE = 256;

const { ca, service, ref, decided } = await signedDecisions(SIGNED);
writeFileSync(path.join(dir!, 'bundle.pem'), ca.certPem);
const inputs = Array.from({ length: SIGNED }, (_, i) => decided(i));

const log = AuditLog.open({ dir: dir!, signer: { svid: () => service } });
const started = performance.now();
const cpu = process.cpuUsage();
for (let i = 0; i < ENTRIES; i += WAVE) {
  const wave: Promise<unknown>[] = [];
  for (let j = i; j < Math.min(ENTRIES, i + WAVE); j++) wave.push(log.append(inputs[j % SIGNED]!, ref));
  await Promise.all(wave);
}
const ms = performance.now() - started;
// CPU time of this process, all threads: on a machine shared with other work, wall time says more about the neighbours.
const cpuMs = cpuMsSince(cpu);
await log.close();

// Each part alone, in the order an append runs them, on the same entries (µs of CPU per
// entry); what they leave is kept only for the next SIGNED entries, as the log keeps a batch.
const PART = Math.min(ENTRIES, 100_000);
const prev = log.tree.leaf(0).toString('base64');
const lines = inputs.map((d, i) => encodeEntry(i, prev, d));
const hashes = lines.map(() => '');
const batch = Buffer.alloc(64 * 1024);
let line = '';
const parts = {
  encode: perEntry(() => {
    for (let i = 0; i < PART; i++) line = encodeEntry(i, prev, inputs[i % SIGNED]!);
  }),
  leaf: perEntry(() => {
    for (let i = 0; i < PART; i++) hashes[i % SIGNED] = leafHashAt(batch, 1, 1 + batch.write(lines[i % SIGNED]!, 1));
  }),
  tree: perEntry(() => {
    const tree = new MerkleTree();
    for (let i = 0; i < PART; i++) tree.append(hashes[i % SIGNED]!);
  }),
};
if (!line) throw new Error('nothing encoded');
console.log(JSON.stringify({ ms, cpuMs, parts, flags: process.execArgv.filter((f) => f.startsWith('--') && f !== '--import' && !f.includes('tsx')) }));

function perEntry(run: () => void): number {
  const cpu = process.cpuUsage();
  run();
  return (cpuMsSince(cpu) * 1000) / PART;
}

function cpuMsSince(cpu: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(cpu);
  return (used.user + used.system) / 1000;
}
