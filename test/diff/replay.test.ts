/**
 * palisade diff --replay: recorded requests (an audit log and a decision log written by a
 * real inbound sidecar in front of the card policy, through its compiled filter in the strict
 * host) replayed through two versions' compiled filters; and, on random requests, replay's
 * changes are exactly the requests the reference interpreter decides differently.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startPerimeter } from '../audit/traffic.ts';
import { fixture } from '../agent/sidecar/policies.ts';
import { palisade } from '../support/cli.ts';
import { compiledFile } from '../support/compiled.ts';
import { cacheKey } from '../../testing/filter-cache.ts';
import { analyze } from '../../compiler/frontend/index.ts';
import { replay, type Replay } from '../../diff/replay.ts';
import { decide } from '../../testing/oracle.ts';
import { fingerprintClaims } from '../../testing/fingerprint.ts';

const CARD = fixture('card.policy.json');
const V2 = 'test/fixtures/diff/card-v2.policy.json'; // card without read-card (GET /cards/{id}), with GET /admin/** allowed
const work = mkdtempSync(path.join(tmpdir(), 'palisade-diff-replay-'));
const env = { PALISADE_CACHE_DIR: path.join(work, 'cache') };
test.after(() => rmSync(work, { recursive: true, force: true }));
// Both policies' filters, as this run compiled them (the perimeter below runs one, the last
// test compares both), are in the replays' cache: a cold asc start in each `palisade diff`
// would cost ~2 s of CPU a policy. A miss compiling into that cache is e2e/tooling's to test.
mkdirSync(env.PALISADE_CACHE_DIR, { mode: 0o700 });
for (const policy of [CARD, V2]) writeFileSync(path.join(env.PALISADE_CACHE_DIR, `${cacheKey(readFileSync(policy, 'utf8'))}.wasm`), (await compiledFile(policy)).wasm);

// One real perimeter run: the frontend's requests, decided by the card policy, in both logs.
const auditDir = path.join(work, 'audit');
const decisionLog = path.join(work, 'decisions.jsonl');
const perimeter = await startPerimeter(auditDir);
try {
  for (const c of [{}, { method: 'POST' as const, path: '/upload', body: 'x' }, { path: '/admin/users' }, { path: '/cards' }]) await perimeter.call(c);
} finally {
  await perimeter.close();
}
writeFileSync(decisionLog, perimeter.lines.filter((l) => l.msg === 'decision').map((l) => JSON.stringify(l)).join('\n') + '\n');

const FRONTEND = 'spiffe://bank.example/ns/web/sa/frontend';
const rows = (xs: Replay['changed']) => xs.map((x) => `${x.caller} ${x.method} ${x.path}: ${x.recorded} ${x.old.decision}→${x.new.decision}`).sort();

for (const [name, log] of [['an audit log directory', auditDir], ['a decision log', decisionLog]]) {
  test(`--replay ${name} written by a real sidecar: the recorded requests the new version decides differently, exit 1`, async () => {
    const r = await palisade(['diff', CARD, V2, '--replay', log, '--format', 'json'], { env });
    assert.is(r.code, 1, r.stderr);
    const { equivalent, replay: replayed } = JSON.parse(r.stdout) as { equivalent: boolean; replay: Replay };
    assert.is(equivalent, false);
    assert.is(replayed.requests, 4);
    assert.equal(rows(replayed.changed), [`${FRONTEND} GET /admin/users: deny deny→allow`, `${FRONTEND} GET /cards/42: allow allow→deny`]);
    assert.ok(replayed.changed.every((x) => typeof x.time === 'string' && !Number.isNaN(Date.parse(x.time))), 'each change carries its recorded time');
    assert.equal(replayed.unlike, [], 'the log was written by OLD: every recorded decision is OLD\'s');
  });
}

test('--replay flags the recorded decisions OLD does not reproduce (the log was made by another version)', async () => {
  const r = await palisade(['diff', V2, CARD, '--replay', auditDir], { env });
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stdout, /replay: 4 recorded requests, 2 decided differently/);
  assert.match(r.stdout, /2 recorded decisions are not OLD's/);
  assert.match(r.stdout, new RegExp(`${FRONTEND} GET /cards/42: recorded allow, OLD deny 403`));
});

test('--replay of the same version: no change, exit 0; a line that is no record is one file:line error, exit 2', async () => {
  const same = await palisade(['diff', CARD, CARD, '--replay', decisionLog], { env });
  assert.is(same.code, 0, same.stderr);
  assert.match(same.stdout, /replay: 4 recorded requests, 0 decided differently/);
  const bad = path.join(work, 'bad.jsonl');
  writeFileSync(bad, `${readFileSync(decisionLog, 'utf8')}{"nope":1}\n`);
  const r = await palisade(['diff', CARD, V2, '--replay', bad], { env });
  assert.is(r.code, 2);
  assert.match(r.stderr, new RegExp(`${bad}:5: no "target"`));
  assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
});

// Random recorded requests against the two versions: what replay says changes is exactly what the reference interpreter decides differently.
const record = fc.record({
  caller: fc.constantFrom(FRONTEND, 'spiffe://bank.example/ns/ops/sa/x', null),
  method: fc.constantFrom('GET', 'POST', 'DELETE'),
  path: fc.constantFrom('/cards', '/cards/7', '/cards/7/x', '/upload', '/slow', '/admin', '/admin/a/b', '/x/../cards/9', '/cards/./7?page=2'),
  user: fc.option(fc.constantFrom({ sub: 'u', scope: 'list_cards' }, { sub: 'u', scope: 'read' }), { nil: undefined }),
});

test('replay changes = the requests on which the two versions (reference interpreter) decide differently', async () => {
  const [oldWasm, newWasm] = await Promise.all([CARD, V2].map(async (f) => (await compiledFile(f)).wasm));
  const [a, b] = [CARD, V2].map((f) => analyze(f, readFileSync(f, 'utf8')).policy!);
  const service = a.service;
  let changes = 0;
  await fc.assert(fc.asyncProperty(fc.array(record, { minLength: 1, maxLength: 30 }), async (recs) => {
    const observed = recs.map((r) => ({ service, caller: r.caller, method: r.method, path: r.path, ...(r.user ? { user: r.user } : {}) }));
    const got = await replay(oldWasm, newWasm, service, observed);
    const verdict = (p: typeof a, r: (typeof observed)[number]) => {
      const o = decide(p, { method: r.method, path: r.path, source: r.caller ?? undefined, user: r.user,
        fingerprint: r.caller ? fingerprintClaims({ caller: r.caller, service, method: r.method, path: r.path }) : undefined });
      return `${o.decision} ${o.status}`;
    };
    const expected = observed.filter((r) => verdict(a, r) !== verdict(b, r)).map((r) => `${r.caller} ${r.method} ${r.path}`);
    assert.equal(got.changed.map((x) => `${x.caller} ${x.method} ${x.path}`), expected);
    changes += expected.length;
  }), { numRuns: 40, seed: 17 });
  assert.ok(changes > 10, `${changes} changed requests: the pairs did differ`);
});

test.run();
