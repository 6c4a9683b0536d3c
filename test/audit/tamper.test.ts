/**
 * `verify` on a log written by a real sidecar for real signed requests, then on copies of
 * it tampered with in every way docs/audit.md lists: each one is refused with its own reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { verifyLog, VerifyError } from '../../audit/verify.ts';
import { MerkleTree, leafHash } from '../../audit/merkle.ts';
import { signCheckpoint, parseCheckpoint } from '../../audit/checkpoint.ts';
import { startPerimeter } from './traffic.ts';
import { LEDGER } from '../agent/sidecar/harness.ts';

const root = mkdtempSync(path.join(tmpdir(), 'palisade-audit-tamper-'));
const original = path.join(root, 'log');
// Checkpoints every 5 entries only (not on a timer), so where they fall is known.
const perimeter = await startPerimeter(original, { log: { checkpointIntervalMs: 3_600_000 } });
const { ids } = perimeter;
// The forger's own SVID of the trust domain, issued before the traffic: valid (from 60 s before
// issue) at every checkpoint's time however long after the traffic its test runs. Issued in the
// test, it was not once the run had spent a minute between this file's setup and that test.
const ledger = await ids.ca.issue(LEDGER);
// 12 decisions: reads of different cards, one denied (no rule for DELETE), one without a fingerprint.
for (let i = 0; i < 10; i++) assert.is((await perimeter.call({ path: `/cards/${i}?q=secret` })).status, 200);
assert.is((await perimeter.call({ method: 'DELETE', path: '/cards/1' })).status, 403);
assert.is((await perimeter.call({ fingerprint: false })).status, 401);
await perimeter.close();
const bundle = ids.ca.certPem;
const segment = (dir: string) => path.join(dir, 'segments', readdirSync(path.join(dir, 'segments'))[0]!);

let copies = 0;
function copy(): string {
  const dir = path.join(root, `copy-${copies++}`);
  cpSync(original, dir, { recursive: true });
  return dir;
}
function lines(dir: string): string[] {
  return readFileSync(segment(dir), 'utf8').split('\n').filter(Boolean);
}
function write(dir: string, l: string[]) {
  writeFileSync(segment(dir), l.map((x) => `${x}\n`).join(''));
}
async function refused(dir: string, pattern: RegExp, trusted?: Parameters<typeof verifyLog>[2]) {
  try {
    await verifyLog(dir, bundle, trusted);
  } catch (err) {
    assert.instance(err, VerifyError);
    assert.match((err as Error).message, pattern, (err as Error).message);
    return;
  }
  assert.unreachable(`verify accepted a log tampered to fail with ${pattern}`);
}
/** Entries with their chain recomputed after an edit, as a forger without the key would. */
function rehash(l: string[]): string[] {
  let prev = '';
  return l.map((text, seq) => {
    const line = JSON.stringify({ ...JSON.parse(text), seq, prev });
    prev = leafHash(Buffer.from(line)).toString('base64');
    return line;
  });
}

test.after(() => rmSync(root, { recursive: true, force: true }));

test('the log of real traffic verifies, entries hold the evidence and nothing secret', async () => {
  const result = await verifyLog(original, bundle);
  assert.is(result.entries, 12);
  assert.ok(result.checkpoints >= 2);
  assert.is(result.unsigned, 0); // close() signed the tail
  const entries = lines(original).map((l) => JSON.parse(l));
  assert.is(entries[0].decision, 'allow');
  assert.is(entries[0].rule, 'read-card');
  assert.is(entries[0].path, '/cards/0?q=');
  assert.is(entries[0].v, 2);
  // Stored reduced: its other claims are the entry's own fields (audit/fingerprint.ts).
  assert.equal(Object.keys(entries[0].fingerprint), ['iat', 'exp', 'jti', 'sig']);
  assert.is(entries[0].caller.id, ids.frontend.svid().spiffeId);
  assert.match(entries[0].policy.sha256, /^[0-9a-f]{64}$/);
  assert.is(entries[10].decision, 'deny');
  assert.is(entries[11].decision, 'unauthenticated');
  assert.is(entries[11].fingerprint, null);
  assert.not.match(readFileSync(segment(original), 'utf8'), /secret/);
});

test('one byte changed in an entry', async () => {
  const dir = copy();
  const l = lines(dir);
  l[3] = l[3]!.replace('"status":200', '"status":201');
  write(dir, l);
  await refused(dir, /^entry 3: altered \(entry 4, segments\/\d+\.jsonl:5, recorded another hash for it\)$/);
});

test('an entry deleted', async () => {
  const dir = copy();
  const l = lines(dir);
  l.splice(4, 1);
  write(dir, l);
  await refused(dir, /entry 4 \(.*\): found entry 5 where entry 4 belongs: entries 4–4 were deleted/);
});

test('an entry inserted', async () => {
  const dir = copy();
  const l = lines(dir);
  // A plausible forgery: a copy of entry 2 with its chain fixed, placed after it.
  const forged = JSON.stringify({ ...JSON.parse(l[2]!), seq: 3, prev: leafHash(Buffer.from(l[2]!)).toString('base64') });
  l.splice(3, 0, forged);
  write(dir, l);
  await refused(dir, /entry 3 appears again where entry 4 belongs: an entry was inserted/);
});

test('two entries swapped', async () => {
  const dir = copy();
  const l = lines(dir);
  [l[6], l[7]] = [l[7]!, l[6]!];
  write(dir, l);
  await refused(dir, /entries 6 and 7 are swapped/);
});

test('the tail truncated, caught by a checkpoint kept elsewhere', async () => {
  const kept = path.join(root, 'kept.note');
  const last = readdirSync(path.join(original, 'checkpoints')).filter((f) => f.endsWith('.note')).sort().at(-1)!;
  cpSync(path.join(original, 'checkpoints', last), kept);
  const trusted = { text: readFileSync(kept, 'utf8'), chainPem: readFileSync(path.join(original, 'checkpoints', last.replace('.note', '.pem')), 'utf8'), name: 'kept.note' };
  const dir = copy();
  write(dir, lines(dir).slice(0, 9));
  // The forger also removes the checkpoints that would give the truncation away.
  for (const f of readdirSync(path.join(dir, 'checkpoints'))) if (Number(f.split('.')[0]) > 9) unlinkSync(path.join(dir, 'checkpoints', f));
  await verifyLog(dir, bundle); // without the kept checkpoint nothing tells
  await refused(dir, /^trusted checkpoint kept\.note: commits to 12 entries but the log holds 9: entries 9–11 were removed/, trusted);
});

test('a segment replaced by a re-hashed forgery, without the key', async () => {
  const dir = copy();
  const l = lines(dir);
  l[1] = l[1]!.replace('"decision":"allow"', '"decision":"deny"');
  write(dir, rehash(l));
  await refused(dir, /^checkpoints\/0+5\.note: its root hash does not match entries 0–4: the entries were rewritten after it was signed$/);
});

test('checkpoints re-signed by another valid SVID of the trust domain', async () => {
  const dir = copy();
  const l = rehash(lines(dir).map((x, i) => (i === 1 ? x.replace('"decision":"allow"', '"decision":"deny"') : x)));
  write(dir, l);
  // The forger rebuilds every checkpoint over the forged entries and signs with its own SVID.
  const tree = new MerkleTree();
  for (const x of l) tree.append(leafHash(Buffer.from(x)));
  for (const f of readdirSync(path.join(dir, 'checkpoints')).filter((f) => f.endsWith('.note'))) {
    const cp = parseCheckpoint(readFileSync(path.join(dir, 'checkpoints', f), 'utf8'));
    writeFileSync(path.join(dir, 'checkpoints', f), signCheckpoint({ ...cp, root: tree.root(cp.size) }, ledger.privateKey));
    writeFileSync(path.join(dir, 'checkpoints', f.replace('.note', '.pem')), ledger.chainPem);
  }
  await refused(dir, new RegExp(`^checkpoints/0+5\\.note: signed by ${LEDGER}, not by the log's agent ${ids.card.svid().spiffeId}$`));
});

test('fingerprints swapped between two entries', async () => {
  const dir = copy();
  const l = lines(dir).map((x) => JSON.parse(x));
  [l[2].fingerprint, l[5].fingerprint] = [l[5].fingerprint, l[2].fingerprint];
  write(dir, rehash(l.map((e) => JSON.stringify(e))));
  // Reduced, a fingerprint is checked over the claims rebuilt from the entry it sits in:
  // moved to another request, it is a signature over other bytes. (Whole JWSs, as v1 logs
  // keep them, name the claim that differs: test/audit/versions.test.ts.)
  await refused(dir, /^entry 2 \(.*\): fingerprint signature does not verify with the caller's certificate$/);
});

test('an entry whose evidence is of the wrong type: refused at that entry, no TypeError', async () => {
  const dir = copy();
  const l = lines(dir).map((x) => JSON.parse(x));
  l[3].caller.serial = 12345;
  write(dir, rehash(l.map((e) => JSON.stringify(e))));
  await refused(dir, /^entry 3 \(.*\): malformed evidence \(.+\)$/);
});

test('a fingerprint with a forged signature', async () => {
  const dir = copy();
  const l = lines(dir).map((x) => JSON.parse(x));
  const signature = Buffer.from(l[4].fingerprint.sig, 'base64url');
  signature[0] ^= 1;
  l[4].fingerprint.sig = signature.toString('base64url');
  write(dir, rehash(l.map((e) => JSON.stringify(e))));
  await refused(dir, /^entry 4 \(.*\): fingerprint signature does not verify with the caller's certificate$/);
});

test.run();
