/**
 * `verify` checks a log in runs of entries on helper threads, side by side (audit/entry-runs.ts):
 * tampering where one run or segment ends and the next begins is caught with the same message
 * as anywhere else, the earliest tampered entry is the one named whichever helper answers
 * first, and a helper thread that dies leaves nothing verified. Helper threads serve one
 * verify after another here (a verify that passed leaves them idle for the next).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuditLog } from '../../audit/log.ts';
import { verifyLog, VerifyError } from '../../audit/verify.ts';
import { leafHash } from '../../audit/merkle.ts';
import { VerifyHelpers, HelperError } from '../../audit/helpers.ts';
import { CHUNK_BYTES, RUN_LINES } from '../../audit/segment-runs.ts';
import { originIdentity } from '../../audit/checkpoint.ts';
import { signedDecisions } from './decisions.ts';

/** Runs end after entries 1023, 2047, … of a segment, and where it ends. */
const RUN = RUN_LINES;
const ENTRIES = 7000;
/** Segments of 6000 entries: entry 6000 opens the second. */
const SEGMENT = 6000;
/** Distinct signed requests, reused round robin: signing is not what is tested. */
const SIGNED = 64;

const root = mkdtempSync(path.join(tmpdir(), 'palisade-audit-runs-'));
const original = path.join(root, 'log');
const { ca, service, ref, decided } = await signedDecisions(SIGNED);
const log = AuditLog.open({ dir: original, signer: { svid: () => service }, maxSegmentEntries: SEGMENT });
for (let i = 0; i < ENTRIES; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => log.append(decided(i + j), ref)));
await log.close();
test.after(() => rmSync(root, { recursive: true, force: true }));

/** The log's lines, each with the segment it is in. */
function linesOf(dir: string): { file: string; text: string }[] {
  const segments = readdirSync(path.join(dir, 'segments')).sort();
  return segments.flatMap((f) => readFileSync(path.join(dir, 'segments', f), 'utf8').split('\n').filter(Boolean).map((text) => ({ file: f, text })));
}
function write(dir: string, lines: { file: string; text: string }[]) {
  for (const f of new Set(lines.map((l) => l.file))) writeFileSync(path.join(dir, 'segments', f), lines.filter((l) => l.file === f).map((l) => `${l.text}\n`).join(''));
}
/** A copy of the log with `edit` applied to its lines (`rehash`: the chain recomputed after, as a forger without the key would). */
let copies = 0;
function tampered(edit: (lines: { file: string; text: string }[]) => void, rehash = false): string {
  const dir = path.join(root, `copy-${copies++}`);
  cpSync(original, dir, { recursive: true });
  const lines = linesOf(dir);
  edit(lines);
  if (rehash) {
    let prev = '';
    lines.forEach((l, seq) => {
      l.text = JSON.stringify({ ...JSON.parse(l.text), seq, prev });
      prev = leafHash(Buffer.from(l.text)).toString('base64');
    });
  }
  write(dir, lines);
  return dir;
}
/** Refused with `pattern`; fingerprint signatures are checked only where the test is about them (7,000 ECDSA checks a verify). */
async function refused(dir: string, pattern: RegExp, signatures = false) {
  try {
    await verifyLog(dir, ca.certPem, undefined, { signatures });
  } catch (err) {
    assert.instance(err, VerifyError);
    assert.match((err as Error).message, pattern, (err as Error).message);
    return;
  }
  assert.unreachable(`verify accepted a log tampered to fail with ${pattern}`);
}
const altered = (lines: { text: string }[], n: number) => (lines[n]!.text = lines[n]!.text.replace('"status":200', '"status":201'));
const segment = (n: number) => (n < SEGMENT ? /segments\/0+\.jsonl/ : /segments\/0*6000\.jsonl/).source;

test('a log of several runs, chunks and segments verifies whole', async () => {
  assert.equal(readdirSync(path.join(original, 'segments')).length, 2);
  assert.ok(statSync(path.join(original, 'segments', readdirSync(path.join(original, 'segments')).sort()[0]!)).size > CHUNK_BYTES, 'the first segment is read in more than one chunk');
  const verified = await verifyLog(original, ca.certPem);
  assert.is(verified.entries, ENTRIES);
  assert.is(verified.unsigned, 0);
});

test('the last entry of a run altered: caught by the first of the next run', async () => {
  await refused(tampered((l) => altered(l, RUN - 1)), new RegExp(`^entry ${RUN - 1}: altered \\(entry ${RUN}, ${segment(RUN)}:${RUN + 1}, recorded another hash for it\\)$`));
});

test('the first entry of a run altered: caught by the second', async () => {
  await refused(tampered((l) => altered(l, RUN)), new RegExp(`^entry ${RUN}: altered \\(entry ${RUN + 1}, ${segment(RUN)}:${RUN + 2}, recorded another hash for it\\)$`));
});

test('the last entry of a segment altered: caught by the first of the next segment', async () => {
  await refused(tampered((l) => altered(l, SEGMENT - 1)), new RegExp(`^entry ${SEGMENT - 1}: altered \\(entry ${SEGMENT}, ${segment(SEGMENT)}:1, recorded another hash for it\\)$`));
});

test('two entries swapped across runs, and across segments', async () => {
  const swap = (a: number) => (l: { text: string }[]) => ([l[a]!.text, l[a + 1]!.text] = [l[a + 1]!.text, l[a]!.text]);
  await refused(tampered(swap(RUN - 1)), new RegExp(`^entry ${RUN - 1} \\(${segment(RUN - 1)}:${RUN}\\): entries ${RUN - 1} and ${RUN} are swapped$`));
  await refused(tampered(swap(SEGMENT - 1)), new RegExp(`^entry ${SEGMENT - 1} \\(${segment(SEGMENT - 1)}:${SEGMENT}\\): entries ${SEGMENT - 1} and ${SEGMENT} are swapped$`));
});

test('entries altered and swapped in lines carried from one chunk into the next', async () => {
  // Whatever the bytes of an entry, the first chunk ends before the segment's last run does.
  const last = SEGMENT - 1;
  await refused(tampered((l) => altered(l, last - 1)), new RegExp(`^entry ${last - 1}: altered \\(entry ${last}, ${segment(last)}:${last + 1}, recorded another hash for it\\)$`));
  const swap = (a: number) => (l: { text: string }[]) => ([l[a]!.text, l[a + 1]!.text] = [l[a + 1]!.text, l[a]!.text]);
  await refused(tampered(swap(last - 2)), new RegExp(`^entry ${last - 2} \\(${segment(last)}:${last - 1}\\): entries ${last - 2} and ${last - 1} are swapped$`));
});

test('an entry deleted where a segment ends', async () => {
  await refused(tampered((l) => l.splice(SEGMENT - 1, 1)), new RegExp(`^entry ${SEGMENT - 1} \\(${segment(SEGMENT)}:1\\): found entry ${SEGMENT} where entry ${SEGMENT - 1} belongs: entries ${SEGMENT - 1}–${SEGMENT - 1} were deleted$`));
});

test('several entries tampered in different runs: the earliest is named, whichever helper answers first', async () => {
  // A forged signature early in the third run, a fingerprint of another request late in
  // the first run checked by another helper, an altered entry in the last run.
  const dir = tampered((l) => {
    const forged = JSON.parse(l[2 * RUN + 5]!.text);
    forged.fingerprint.sig = `${forged.fingerprint.sig.startsWith('A') ? 'B' : 'A'}${forged.fingerprint.sig.slice(1)}`;
    l[2 * RUN + 5]!.text = JSON.stringify(forged);
    const moved = JSON.parse(l[RUN - 3]!.text);
    moved.fingerprint = JSON.parse(l[RUN - 2]!.text).fingerprint;
    l[RUN - 3]!.text = JSON.stringify(moved);
    altered(l, ENTRIES - 10);
  }, true);
  await refused(dir, new RegExp(`^entry ${RUN - 3} \\(${segment(RUN - 3)}:${RUN - 2}\\): fingerprint signature does not verify with the caller's certificate$`), true);
  const later = tampered((l) => {
    const forged = JSON.parse(l[2 * RUN + 5]!.text);
    forged.fingerprint.sig = `${forged.fingerprint.sig.startsWith('A') ? 'B' : 'A'}${forged.fingerprint.sig.slice(1)}`;
    l[2 * RUN + 5]!.text = JSON.stringify(forged);
  }, true);
  await refused(later, new RegExp(`^entry ${2 * RUN + 5} \\(${segment(2 * RUN + 5)}:${2 * RUN + 5 + 1}\\): fingerprint signature does not verify with the caller's certificate$`), true);
});

test('a helper thread that dies with a run in hand: the run is refused, never answered, and so is every run after', async () => {
  const helpers = await VerifyHelpers.start({ dir: original, bundlePem: ca.certPem, service: originIdentity(readFileSync(path.join(original, 'origin'), 'utf8').trim()), signatures: true }, 1);
  const segments = readdirSync(path.join(original, 'segments')).sort().map((f) => path.join(original, 'segments', f));
  const file = readFileSync(segments[0]!);
  const bytes = Buffer.from(new SharedArrayBuffer(file.length));
  file.copy(bytes);
  let end = 0;
  for (let i = 0; i < RUN; i++) end = bytes.indexOf(10, end) + 1;
  // A whole run with its 1,024 fingerprint signatures: tens of milliseconds in the helper's hands.
  const run = { bytes, offset: 0, subtree: true, start: 0, end, count: RUN, first: 0, line: 1, prev: '', segments, segment: 0, name: 'segments/x' };
  const answer = await helpers.check(run);
  assert.is(answer.failure, undefined, answer.failure);
  assert.equal(Buffer.from(answer.leaves.subarray(0, 32)), leafHash(bytes.subarray(0, bytes.indexOf(10))), 'a live helper answers');
  const pending = helpers.check(run);
  await helpers.close(); // the thread is gone before it answers
  try {
    await pending;
    assert.unreachable('a run in the hands of a dead helper was answered');
  } catch (err) {
    assert.instance(err, HelperError);
    assert.match((err as Error).message, /^a verify helper thread failed: /);
  }
  await helpers.check(run).then(
    () => assert.unreachable('a run was answered after a helper died'),
    (err) => assert.instance(err, HelperError),
  );
  assert.is((await verifyLog(original, ca.certPem, undefined, { signatures: false })).entries, ENTRIES, 'the next verify has threads of its own');
});

test.run();
