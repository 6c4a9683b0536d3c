/**
 * `palisade learn` on traffic in the real log formats (the sidecar's pino decision lines
 * and audit entries), through a real `palisade` process: its proposals compile, lint finds
 * nothing, and replaying every observed request through each compiled proposal in the
 * strict host is allowed, while what was never observed (another method, a deeper caller ID,
 * a caller seen only elsewhere, an unseen path) is still denied.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { palisade } from '../support/cli.ts';
import { createLogger, logDecision, pathForLog } from '../../agent/sidecar/decision-log.ts';
import { encodeEntry } from '../../audit/entry.ts';
import { checkPolicy } from '../../compiler/index.ts';
import { compiledFile } from '../support/compiled.ts';
import { lint } from '../../lint/index.ts';
import { loadFilter } from '../../host/index.ts';
import { evaluate, type CaseRequest } from '../../testing/cases.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'palisade-learn-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const td = 'spiffe://bank.example';
const cards = `${td}/ns/payments/sa/card-service`;
const ledger = `${td}/ns/finance/sa/ledger`;
const frontends = [0, 1, 2, 3].map((k) => `${td}/ns/web/sa/frontend-${k}`);
const prober = `${td}/ns/ops/sa/prober`;
const partner = 'spiffe://partner.example/ns/api/sa/gateway';
const uuid = '3f2a9c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b';

interface Seen { service: string; caller: string | null; method: string; path: string }
const seen: Seen[] = [];
for (let i = 0; i < 12; i++) for (const f of frontends) seen.push({ service: cards, caller: f, method: 'GET', path: `/cards/${4000 + i}?access_token=x` });
for (let i = 0; i < 40; i++) seen.push({ service: cards, caller: prober, method: 'GET', path: `/static/asset-${i}.js` });
seen.push({ service: cards, caller: prober, method: 'GET', path: '/healthz' });
seen.push({ service: cards, caller: partner, method: 'POST', path: `/cards/${uuid}/charge` });
seen.push({ service: cards, caller: partner, method: 'PUT', path: `/cards/${uuid}/charge` });
seen.push({ service: cards, caller: null, method: 'GET', path: '/cards/1' });
for (let i = 0; i < 5; i++) seen.push({ service: ledger, caller: frontends[0], method: 'POST', path: `/entries/${'ab12'.repeat(8)}${i}/approve` });

// The sidecar's own logger and the audit log's own encoder write the input, half each.
const lines: string[] = [];
const logger = createLogger(new Writable({ write(chunk, _enc, done) { lines.push(...String(chunk).split('\n').filter(Boolean)); done(); } }));
seen.forEach((s, i) => {
  const common = { trace_id: 't', request_id: `r${i}`, method: s.method, path: pathForLog(s.path), decision: 'deny', rule: null, mode: 'dry-run', status: 200, reason: 'default_deny' };
  if (i % 2) logDecision(logger, { ...common, caller: s.caller, target: s.service, user: null, client_id: null, audit_index: null, latency_ms: 1 });
  else lines.push(encodeEntry(i, '', { ...common, time: new Date(0).toISOString(), service: s.service, caller: s.caller === null ? null : { id: s.caller, serial: '1', cert: 'x' }, user: null, policy: null, fingerprint: null }));
});

const request = (s: Pick<Seen, 'caller' | 'method' | 'path'>): CaseRequest => ({ method: s.method, path: s.path, source: s.caller ?? undefined });

test("learn's proposal allows every request of its input, nothing unobserved, and lints clean", async () => {
  await new Promise((r) => setImmediate(r));
  assert.is(lines.length, seen.length);
  writeFileSync(path.join(dir, 'observed.jsonl'), `${lines.join('\n')}\n`);
  const out = path.join(dir, 'out');
  const r = await palisade(['learn', 'observed.jsonl', '--out', out, '--format', 'json'], { cwd: dir });
  assert.is(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout).services as { service: string; observed: number; allowed: number; allowable: number; generalizations: Record<string, unknown>[] }[];
  assert.equal(readdirSync(out).sort(), ['card-service.policy.json', 'ledger.policy.json']);
  const card = report.find((x) => x.service === cards)!;
  assert.equal([card.observed, card.allowable, card.allowed], [seen.filter((s) => s.service === cards).length, seen.filter((s) => s.service === cards).length - 1, seen.filter((s) => s.service === cards).length - 1]);
  assert.ok(card.generalizations.some((g) => g.kind === 'callers' && g.pattern === `${td}/ns/web/sa/*` && g.ids === 4));
  assert.ok(card.generalizations.some((g) => g.kind === 'param' && g.template === '/cards/{card_id}' && g.values === 12));
  assert.ok(card.generalizations.some((g) => g.kind === 'rest' && g.template === '/static/**' && g.paths === 40));

  for (const file of readdirSync(out).map((f) => path.join(out, f))) {
    const checked = checkPolicy(file, readFileSync(file, 'utf8'));
    if (!checked.ok) throw new Error(`${file} does not check`);
    assert.equal(lint(checked), [], `lint on ${file}`);
    const filter = await loadFilter((await compiledFile(file)).wasm, { name: path.basename(file) });
    try {
      const decide = async (s: Pick<Seen, 'caller' | 'method' | 'path'>) => {
        const e = await evaluate(filter, request(s), checked.program.service, 'learn-test');
        if (typeof e === 'string') throw new Error(e);
        return e.decision?.decision;
      };
      for (const s of seen.filter((x) => x.service === checked.program.service && x.caller)) assert.is(await decide(s), 'allow', `${s.method} ${s.path} from ${s.caller}`);
      if (checked.program.service !== cards) continue;
      // Least privilege: only what was observed, generalized as reported.
      assert.is(await decide({ caller: frontends[0], method: 'DELETE', path: '/cards/4001' }), 'deny');
      assert.is(await decide({ caller: `${td}/ns/web/sa/frontend-0/debug`, method: 'GET', path: '/cards/4001' }), 'deny');
      assert.is(await decide({ caller: prober, method: 'GET', path: '/cards/4001' }), 'deny');
      assert.is(await decide({ caller: frontends[0], method: 'GET', path: '/cards/4001/pin' }), 'deny');
      assert.is(await decide({ caller: frontends[0], method: 'GET', path: '/static/asset-1.js' }), 'deny');
      assert.is(await decide({ caller: partner, method: 'GET', path: `/cards/${uuid}/charge` }), 'deny');
    } finally {
      await filter.close();
    }
  }
});

test('learn refuses a line that is neither log format with file:line, no stack trace', async () => {
  writeFileSync(path.join(dir, 'bad.jsonl'), `${lines[0]}\n{"hello":1}\n`);
  const r = await palisade(['learn', 'bad.jsonl', '--out', path.join(dir, 'bad')], { cwd: dir });
  assert.is(r.code, 2);
  assert.match(r.stderr, /^palisade: bad\.jsonl:2: no "target": neither a decision log nor an audit log line\n$/m);
  assert.not.match(r.stderr, /\n\s+at /);
});

test.run();
