/**
 * Entry versions. v1 logs stay verifiable: test/audit/fixtures/v1 was written by a real
 * sidecar for real signed requests with the code of commit 3ab51b8 (before v2), and it must
 * verify, and be refused when tampered with, as it was then. v2 keeps a fingerprint reduced
 * only when the entry rebuilds exactly the bytes the caller signed; any other JWS is kept
 * whole and still verifies.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { verifyLog, VerifyError } from '../../audit/verify.ts';
import { leafHash } from '../../audit/merkle.ts';
import { AuditLog } from '../../audit/log.ts';
import type { Decided } from '../../audit/entry.ts';
import { signFingerprint } from '../../spiffe/fingerprint.ts';
import { identities, CARD, FRONTEND } from '../agent/sidecar/harness.ts';

const FIXTURE = path.join(import.meta.dirname, 'fixtures', 'v1');
const bundle = readFileSync(path.join(FIXTURE, 'bundle.pem'), 'utf8');
const root = mkdtempSync(path.join(tmpdir(), 'palisade-audit-versions-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

let copies = 0;
/** A copy of the v1 log with its entries changed by `edit` (the chain re-hashed, as a forger without the key would). */
function v1Copy(edit?: (entries: Record<string, any>[]) => void): string {
  const dir = path.join(root, `v1-${copies++}`);
  cpSync(path.join(FIXTURE, 'log'), dir, { recursive: true });
  if (edit) {
    const segment = path.join(dir, 'segments', readdirSync(path.join(dir, 'segments'))[0]!);
    const entries = readFileSync(segment, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    edit(entries);
    let prev = '';
    const lines = entries.map((e, seq) => {
      const line = JSON.stringify({ ...e, seq, prev });
      prev = leafHash(Buffer.from(line)).toString('base64');
      return `${line}\n`;
    });
    writeFileSync(segment, lines.join(''));
  }
  return dir;
}

async function refused(dir: string, pattern: RegExp): Promise<void> {
  try {
    await verifyLog(dir, bundle);
  } catch (err) {
    assert.instance(err, VerifyError);
    assert.match((err as Error).message, pattern, (err as Error).message);
    return;
  }
  assert.unreachable(`verify accepted a v1 log tampered to fail with ${pattern}`);
}

test('a v1 log written before v2 still verifies', async () => {
  const entries = readFileSync(path.join(FIXTURE, 'log', 'segments', '0000000000000000.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.ok(entries.every((e) => e.v === 1));
  assert.is(typeof entries[0].fingerprint, 'string');
  const result = await verifyLog(v1Copy(), bundle);
  assert.equal([result.entries, result.checkpoints, result.unsigned], [8, 2, 0]);
});

test('v1, one byte changed: refused at the next entry, as before', async () => {
  const dir = v1Copy();
  const segment = path.join(dir, 'segments', '0000000000000000.jsonl');
  const lines = readFileSync(segment, 'utf8').split('\n');
  lines[3] = lines[3]!.replace('"status":200', '"status":201');
  writeFileSync(segment, lines.join('\n'));
  await refused(dir, /^entry 3: altered \(entry 4, segments\/0+\.jsonl:5, recorded another hash for it\)$/);
});

test('v1, fingerprints swapped between two entries: the claim that differs is named', async () => {
  await refused(v1Copy((e) => ([e[2]!.fingerprint, e[5]!.fingerprint] = [e[5]!.fingerprint, e[2]!.fingerprint])), /^entry 2 \(.*\): fingerprint belongs to another request: its htu is "\/cards\/5", the entry's "\/cards\/2"$/);
});

test('v1, a forged fingerprint signature', async () => {
  const dir = v1Copy((e) => {
    const [h, p, s] = e[4]!.fingerprint.split('.');
    const signature = Buffer.from(s, 'base64url');
    signature[0] ^= 1;
    e[4]!.fingerprint = `${h}.${p}.${signature.toString('base64url')}`;
  });
  await refused(dir, /^entry 4 \(.*\): fingerprint signature does not verify with the caller's certificate$/);
});

test('v1, a reduced fingerprint is not accepted in a v1 entry', async () => {
  await refused(v1Copy((e) => (e[1]!.fingerprint = { iat: 1, exp: 2, jti: 'x', sig: 'y' })), /^entry 1 \(.*\): fingerprint is not a JWS$/);
});

test('v2: a fingerprint the entry does not rebuild byte for byte is kept whole, and verifies', async () => {
  const ids = await identities();
  const dir = path.join(root, 'v2');
  const log = AuditLog.open({ dir, signer: ids.card });
  const cert = new X509Certificate(ids.frontend.svid().chainPem);
  const ref = { id: AuditLog.certificateId(cert.raw), der: cert.raw };
  const key = ids.frontend.svid().privateKey;
  const decided = (fingerprint: string): Decided => ({
    time: new Date().toISOString(), trace_id: '0af7651916cd43dd8448eb211c80319c', request_id: 'r', service: CARD,
    caller: { id: FRONTEND, serial: cert.serialNumber, cert: ref.id }, user: null, method: 'GET', path: '/cards/1?q=',
    decision: 'allow', status: 200, rule: 'read-card', mode: 'enforce', reason: 'allow_rule', policy: null, fingerprint,
  });
  const plain = signFingerprint(key, { caller: FRONTEND, target: CARD, method: 'GET', path: '/cards/1' });
  // Signed with a `kid` (as for Envoy's jwt_authn): another header than the one the entry rebuilds.
  const withKid = signFingerprint(key, { caller: FRONTEND, target: CARD, method: 'GET', path: '/cards/1' }, { kid: 'k1' });
  for (const jws of [plain, withKid]) await log.append(decided(jws), ref);
  await log.close();
  const stored = readFileSync(path.join(dir, 'segments', '0000000000000000.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.equal(stored.map((e) => e.v), [2, 2]);
  assert.equal(Object.keys(stored[0].fingerprint), ['iat', 'exp', 'jti', 'sig']);
  assert.is(stored[1].fingerprint, withKid);
  assert.is((await verifyLog(dir, ids.ca.certPem)).entries, 2);
});

test.run();
