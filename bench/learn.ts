/**
 * `palisade learn`'s work on 100,000 observed decisions (audit and decision-log lines, 40
 * callers, 3 services, ids, UUIDs and a fanned-out static tree): parsing, proposing, and
 * verifying (compile, lint, replay of every distinct request through the strict host), each
 * timed in this process. Usage: node --import tsx bench/learn.ts [count]
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseObserved } from '../learn/observed.ts';
import { propose } from '../learn/propose.ts';
import { verify } from '../learn/verify.ts';

const count = Number(process.argv[2] ?? 100_000);
const td = 'spiffe://bank.example';
const services = ['card-service', 'ledger', 'profile'].map((s) => `${td}/ns/core/sa/${s}`);
const uuids = Array.from({ length: 500 }, () => randomUUID());
const lines: string[] = [];
for (let i = 0; i < count; i++) {
  const service = services[i % 3];
  const caller = `${td}/ns/team${i % 8}/sa/w${i % 5}`;
  const method = i % 7 === 0 ? 'POST' : 'GET';
  const path = [`/cards/${i % 9973}`, `/orders/${uuids[i % 500]}/items/${i % 50}`, `/static/asset-${i % 300}.js`, '/healthz'][i % 4];
  lines.push(i % 2
    ? JSON.stringify({ level: 30, caller, target: service, method, path, decision: 'deny', rule: null, mode: 'dry-run', status: 200, reason: 'default_deny', msg: 'decision' })
    : JSON.stringify({ v: 1, seq: i, prev: '', service, caller: { id: caller, serial: '1', cert: 'x' }, method, path, decision: 'deny', status: 200 }));
}
const text = `${lines.join('\n')}\n`;
const dir = mkdtempSync(path.join(tmpdir(), 'palisade-bench-learn-'));
try {
  let t = performance.now();
  const lap = () => { const s = ((performance.now() - t) / 1000).toFixed(2); t = performance.now(); return `${s} s`; };
  const observed = parseObserved('bench', text);
  const parsed = lap();
  const proposals = propose(observed, { group: 3, fanout: 20 });
  const proposed = lap();
  let allowed = 0;
  for (const p of proposals) allowed += (await verify(path.join(dir, `${p.name}.policy.json`), p)).allowed;
  console.log(`${count} decisions, ${proposals.length} services: parse ${parsed}, propose ${proposed}, verify (compile, lint, replay) ${lap()}; ${allowed} of ${observed.length} allowed`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
