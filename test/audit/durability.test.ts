/**
 * What the log does when the disk fails it and after a crash: a real sidecar with a real
 * ENOSPC (the next segment is /dev/full), a torn write cut off on restart, and an SVID
 * rotation in the middle of the log.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuditLog } from '../../audit/log.ts';
import { verifyLog } from '../../audit/verify.ts';
import { chainFileOf, checkpointFile, segmentFile } from '../../audit/files.ts';
import { startPerimeter } from './traffic.ts';
import { CARD } from '../agent/sidecar/harness.ts';

const root = mkdtempSync(path.join(tmpdir(), 'palisade-audit-durability-'));
let n = 0;
const fresh = () => path.join(root, `log-${n++}`);
test.after(() => rmSync(root, { recursive: true, force: true }));

const counter = async (registry: import('prom-client').Registry, result: string) =>
  ((await registry.getSingleMetric('palisade_audit_entries_total')!.get()).values.find((v) => v.labels.result === result)?.value ?? 0);

test('disk full, --audit-failure closed: 503, the application never sees the request, and it recovers', async () => {
  const dir = fresh();
  const p = await startPerimeter(dir, { log: { maxSegmentEntries: 2 } });
  try {
    for (let i = 0; i < 2; i++) assert.is((await p.call({ path: `/cards/${i}` })).status, 200);
    symlinkSync('/dev/full', segmentFile(dir, 2)); // the next segment: every write fails with ENOSPC
    const seen = p.echo.seen.length;
    const res = await p.call({ path: '/cards/7' });
    assert.is(res.status, 503);
    assert.equal(res.json(), { error: 'unavailable', request_id: res.json().request_id });
    assert.is(p.echo.seen.length, seen, 'forwarded without an audit entry');
    assert.is(await counter(p.registry, 'refused'), 1);
    assert.ok(p.lines.some((l) => l.msg === 'audit entry not written; request refused' && String(l.err).includes('ENOSPC')));
    unlinkSync(segmentFile(dir, 2)); // space again
    assert.is((await p.call({ path: '/cards/8' })).status, 200);
  } finally {
    await p.close();
  }
  const verified = await verifyLog(dir, p.ids.ca.certPem);
  assert.is(verified.entries, 3);
});

test('disk full, --audit-failure open: forwarded, and the loss is counted and logged', async () => {
  const dir = fresh();
  const p = await startPerimeter(dir, { failure: 'open', log: { maxSegmentEntries: 1 } });
  try {
    assert.is((await p.call()).status, 200);
    symlinkSync('/dev/full', segmentFile(dir, 1));
    assert.is((await p.call({ path: '/cards/9' })).status, 200);
    assert.is(p.echo.seen.at(-1)!.url, '/cards/9');
    assert.is(await counter(p.registry, 'lost'), 1);
    assert.ok(p.lines.some((l) => l.msg === 'audit entry lost; request forwarded (--audit-failure open)'));
    unlinkSync(segmentFile(dir, 1));
  } finally {
    await p.close();
  }
  assert.is((await verifyLog(dir, p.ids.ca.certPem)).entries, 1);
});

/** A log of `n` allowed calls written by a perimeter that has stopped; its first segment. */
async function trafficLog(n: number) {
  const dir = fresh();
  const p = await startPerimeter(dir);
  for (let i = 0; i < n; i++) await p.call({ path: `/cards/${i}` });
  await p.close();
  return { dir, ids: p.ids, segment: path.join(dir, 'segments', readdirSync(path.join(dir, 'segments'))[0]!) };
}

test('a torn last write is cut off on open and the log still verifies', async () => {
  const { dir, ids, segment } = await trafficLog(4);
  const whole = readFileSync(segment, 'utf8');
  appendFileSync(segment, whole.split('\n')[0]!.slice(0, 57)); // a crash in the middle of the next write
  const warnings: string[] = [];
  const log = AuditLog.open({ dir, signer: ids.card, onWarning: (m) => warnings.push(m) });
  assert.is(log.tree.size, 4);
  assert.match(warnings.join(), /cut 57 bytes of a torn write/);
  assert.is(readFileSync(segment, 'utf8'), whole);
  await log.close();
  assert.is((await verifyLog(dir, ids.ca.certPem)).entries, 4);
});

test('a log whose entries lost what a checkpoint committed to does not open for writing', async () => {
  const { dir, ids, segment } = await trafficLog(5);
  writeFileSync(segment, readFileSync(segment, 'utf8').split('\n').slice(0, 3).join('\n') + '\n');
  assert.throws(() => AuditLog.open({ dir, signer: ids.card }), /does not match its checkpoint/);
});

test('checkpoints signed before and after an SVID rotation all verify; another workload cannot take the log over', async () => {
  const dir = fresh();
  const p = await startPerimeter(dir, { log: { checkpointIntervalMs: 3_600_000 } });
  try {
    for (let i = 0; i < 5; i++) await p.call({ path: `/cards/${i}` });
    await p.log.checkpoint(); // signed with the first SVID before it goes
    p.ids.card.rotate(await p.ids.ca.issue(CARD));
    for (let i = 5; i < 10; i++) await p.call({ path: `/cards/${i}` });
  } finally {
    await p.close();
  }
  const chains = readdirSync(path.join(dir, 'checkpoints')).filter((f) => f.endsWith('.pem')).map((f) => readFileSync(path.join(dir, 'checkpoints', f), 'utf8'));
  assert.is(new Set(chains).size, 2);
  assert.is((await verifyLog(dir, p.ids.ca.certPem)).checkpoints, 2);
  assert.throws(() => AuditLog.open({ dir, signer: p.ids.frontend }), /belongs to spiffe:\/\/bank\.example\/ns\/payments\/sa\/card/);
});

test("a checkpoint's chain: linked to the last one's while the SVID stays (also across a restart), its own after a rotation or when the last one is gone or a file is in the way", async () => {
  const dir = fresh();
  const chain = (size: number) => chainFileOf(checkpointFile(dir, size));
  const inode = (size: number) => statSync(chain(size)).ino;
  let p = await startPerimeter(dir, { log: { checkpointIntervalMs: 3_600_000 } });
  const ids = p.ids;
  const first = ids.card.svid().chainPem;
  /** One more entry, and a checkpoint over it (size = entries so far). */
  const step = async (size: number) => {
    assert.is((await p.call({ path: `/cards/${size}` })).status, 200);
    await p.log.checkpoint();
    assert.ok(existsSync(checkpointFile(dir, size)), `checkpoint ${size}`);
  };
  try {
    for (const size of [1, 2, 3]) await step(size);
    ids.card.rotate(await ids.ca.issue(CARD));
    await step(4);
    await step(5);
    // The last checkpoint gone, chain and all (verify needs no checkpoint in particular).
    unlinkSync(chain(5));
    unlinkSync(checkpointFile(dir, 5));
    await step(6);
    writeFileSync(chain(7), 'in the way'); // as a crash between a chain and its note would leave it
    await step(7);
  } finally {
    await p.close();
  }
  p = await startPerimeter(dir, { ids, log: { checkpointIntervalMs: 3_600_000 } });
  try {
    await step(8); // after a restart: linked to the checkpoint found on disk
  } finally {
    await p.close();
  }
  const second = ids.card.svid().chainPem;
  assert.is.not(first, second);
  assert.equal([1, 2, 3].map((s) => readFileSync(chain(s), 'utf8')), [first, first, first]);
  assert.equal([4, 6, 7, 8].map((s) => readFileSync(chain(s), 'utf8')), [second, second, second, second]);
  assert.is(inode(2), inode(1));
  assert.is(inode(3), inode(1));
  assert.is.not(inode(4), inode(3));
  assert.is.not(inode(6), inode(4));
  assert.is.not(inode(7), inode(6));
  assert.is(inode(8), inode(7));
  // Files, not links, to whoever reads them: each checkpoint verifies with the chain beside it.
  assert.is((await verifyLog(dir, ids.ca.certPem)).checkpoints, 7);
});

test('checkpoints signed while entries keep arriving and segments rotate all commit to what is on disk and verify', async () => {
  const dir = fresh();
  const warnings: string[] = [];
  // A checkpoint every 3 entries, a new segment every 4: fsyncs, signatures and rotations overlap the writes.
  const p = await startPerimeter(dir, { log: { checkpointEvery: 3, maxSegmentEntries: 4, onWarning: (m) => warnings.push(m) } });
  try {
    for (let wave = 0; wave < 4; wave++) {
      const statuses = await Promise.all(Array.from({ length: 10 }, (_, i) => p.call({ path: `/cards/${wave * 10 + i}` }).then((r) => r.status)));
      assert.equal(statuses, Array(10).fill(200));
    }
  } finally {
    await p.close();
  }
  assert.equal(warnings, []);
  assert.ok(readdirSync(path.join(dir, 'segments')).length > 1, 'segments rotated');
  const verified = await verifyLog(dir, p.ids.ca.certPem);
  assert.is(verified.entries, 40);
  assert.is(verified.unsigned, 0, 'close signs a checkpoint for every entry');
  assert.ok(verified.checkpoints >= 2);
});

test.run();
