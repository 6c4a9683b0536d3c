/**
 * How an entry (v2) stores the caller's fingerprint: reduced to `{ iat, exp, jti, sig }` only
 * when the entry's fields rebuild, byte for byte, the signing input the caller signed. The
 * rebuilt claims' JSON must be exactly JSON.stringify's for any strings (the appender writes
 * plain ones itself, for speed), and any JWS signed over other bytes for the same claims
 * must be kept whole: both are checked here with real signatures, through the log and verify.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { X509Certificate, sign, type KeyObject } from 'node:crypto';
import { signingInput, storedFingerprint } from '../../audit/fingerprint.ts';
import { AuditLog } from '../../audit/log.ts';
import { verifyLog } from '../../audit/verify.ts';
import type { Decided } from '../../audit/entry.ts';
import { JWS_HEADER, htuOf, signFingerprint, tokenHash } from '../../spiffe/fingerprint.ts';
import { identities, CARD, FRONTEND } from '../agent/sidecar/harness.ts';

const root = mkdtempSync(path.join(tmpdir(), 'palisade-audit-fingerprint-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

/** The signing input as docs/audit.md ("Versions") defines it. */
function definedSigningInput(e: { caller: { id: string }; service: string; method: string; path: string; user: { token_sha256: string } | null }, f: { iat: number; exp: number; jti: string }): string {
  const claims = { iss: e.caller.id, sub: e.caller.id, aud: e.service, htm: e.method, htu: htuOf(e.path), iat: f.iat, exp: f.exp, jti: f.jti, ath: e.user?.token_sha256 };
  return `${JWS_HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
}

/** A compact ES256 JWS with our header over exactly `payload` (JSON text as the signer chose to write it). */
function signedOver(key: KeyObject, payload: string): string {
  const input = `${JWS_HEADER}.${Buffer.from(payload).toString('base64url')}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

test('the rebuilt signing input is JSON.stringify of the claims, for any strings', () => {
  // Mostly what JSON writes as is, sometimes a character it escapes or one beyond ASCII.
  const text = fc.oneof(
    fc.string({ unit: fc.constantFrom(...'/abc-_.:~%?!#[]{}*+ 09AZ') }),
    fc.string({ unit: 'grapheme' }),
    fc.string({ unit: 'binary' }),
    fc.constantFrom('"', '\\', '\u007f', '\u0000', '\n', '\u2028', '\ud800', 'é', '𝄞'),
  );
  const integer = fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.constant(-1), fc.constant(0));
  fc.assert(
    fc.property(text, text, text, text, text, fc.option(text, { nil: undefined }), integer, integer, (id, service, method, pathText, jti, ath, iat, exp) => {
      const entry = { caller: { id }, service, method, path: pathText, user: ath === undefined ? null : { token_sha256: ath } };
      const f = { iat, exp, jti, sig: 's' };
      assert.is(signingInput(entry, f), definedSigningInput(entry, f));
    }),
    { numRuns: 3000 },
  );
});

test('a fingerprint signed over other bytes for the same claims is kept whole; a byte-exact one is reduced; every entry verifies', async () => {
  const ids = await identities();
  const key = ids.frontend.svid().privateKey;
  const cert = new X509Certificate(ids.frontend.svid().chainPem);
  const ref = { id: AuditLog.certificateId(cert.raw), der: cert.raw };
  const token = 'eyJhbGciOiJFUzI1NiJ9.e30.sig';
  const entryFor = (p: string, fingerprint: string): Decided => ({
    time: new Date().toISOString(), trace_id: '0af7651916cd43dd8448eb211c80319c', request_id: 'r', service: CARD,
    caller: { id: FRONTEND, serial: cert.serialNumber, cert: ref.id }, user: { claims: { sub: 'alice' }, token_sha256: tokenHash(token) },
    method: 'GET', path: p, decision: 'allow', status: 200, rule: 'read-card', mode: 'enforce', reason: 'allow_rule', policy: null, fingerprint,
  });
  const iat = Math.floor(Date.now() / 1000);
  const claims = { iss: FRONTEND, sub: FRONTEND, aud: CARD, htm: 'GET', htu: '/cards/1', iat, exp: iat + 30, jti: 'AAAAAAAAAAAAAAAAAAAAAA', ath: tokenHash(token) };
  const exact = JSON.stringify(claims);
  const { iss: _, ...withoutIss } = claims;
  // The same claims, written otherwise: each is a JWS the caller really signed, but not over
  // the bytes the entry rebuilds, so reducing it would leave an entry that no longer verifies.
  const spelledOtherwise = [
    exact.replace('"htu":"/cards/1"', '"htu":"\\/cards\\/1"'), // JSON's optional escape of '/'
    exact.replace('"htm":"GET"', '"htm":"\\u0047ET"'),
    exact.replace(',"iat"', ', "iat"'), // a space
    JSON.stringify({ ...withoutIss, iss: claims.iss }), // another order
    exact.replace(`"iat":${iat}`, `"iat":${iat}.0`), // the same number
  ];
  const byteExact = [
    signFingerprint(key, { caller: FRONTEND, target: CARD, method: 'GET', path: '/cards/1?q=1', identityToken: token }),
    // Characters JSON escapes or that are not ASCII: JSON.stringify's spelling is the one rebuilt.
    signFingerprint(key, { caller: FRONTEND, target: CARD, method: 'GET', path: '/cards/"quoted"\\é𝄞', identityToken: token }),
  ];
  for (const payload of spelledOtherwise) assert.equal(JSON.parse(payload), claims, payload);

  const whole = spelledOtherwise.map((payload) => ({ path: '/cards/1', jws: signedOver(key, payload), parsed: JSON.parse(payload) }));
  const reduced = byteExact.map((jws) => ({ path: JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString()).htu as string, jws }));
  for (const { path: p, jws, parsed } of whole) {
    // With the claims the sidecar verified, and without (decoded here).
    assert.is(storedFingerprint(jws, entryFor(p, jws), parsed), jws);
    assert.is(storedFingerprint(jws, entryFor(p, jws)), jws);
  }
  for (const { path: p, jws } of reduced) assert.type(storedFingerprint(jws, entryFor(p, jws)), 'object');

  const dir = path.join(root, 'log');
  const log = AuditLog.open({ dir, signer: ids.card });
  for (const { path: p, jws } of [...whole, ...reduced]) await log.append(entryFor(p, jws), ref);
  await log.close();
  const stored = readFileSync(path.join(dir, 'segments', '0000000000000000.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).fingerprint);
  assert.equal(stored.slice(0, whole.length), whole.map((w) => w.jws));
  for (const f of stored.slice(whole.length)) assert.equal(Object.keys(f), ['iat', 'exp', 'jti', 'sig']);
  assert.is((await verifyLog(dir, ids.ca.certPem)).entries, whole.length + reduced.length);
});

test.run();
