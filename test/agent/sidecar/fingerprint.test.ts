import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { generateKeyPairSync, createSecretKey, X509Certificate, sign } from 'node:crypto';
import fc from 'fast-check';
import { SignJWT, decodeProtectedHeader, decodeJwt, base64url, jwtVerify } from 'jose';
import { createCa } from './pki.ts';
import {
  signFingerprint,
  verifyFingerprint,
  tokenHash,
  FingerprintError,
  FINGERPRINT_TYP,
  type VerifyOptions,
} from '../../../spiffe/fingerprint.ts';
import { ReplayCache } from '../../../spiffe/replay-cache.ts';

const FRONTEND = 'spiffe://bank.example/ns/web/sa/frontend';
const CARD = 'spiffe://bank.example/ns/payments/sa/card';
const ca = await createCa('bank.example');
const caller = await ca.issue(FRONTEND);
const other = await ca.issue(FRONTEND);
// The verifier only ever sees the public key of the caller's certificate.
const callerCertKey = new X509Certificate(caller.chainPem).publicKey;
const otherCertKey = new X509Certificate(other.chainPem).publicKey;

const request = { caller: FRONTEND, target: CARD, method: 'GET', path: '/cards/42?page=2' };
const expect = (extra: Partial<VerifyOptions> = {}): VerifyOptions => ({
  self: CARD,
  caller: FRONTEND,
  method: 'GET',
  path: '/cards/42?page=3', // query does not take part
  ...extra,
});

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, FingerprintError);
    return (err as FingerprintError).reason;
  }
  return 'accepted';
}

/** Signs arbitrary claims/header with the caller's key, to build hostile tokens. */
function forge(claims: Record<string, unknown>, header: Record<string, unknown> = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    iss: FRONTEND, sub: FRONTEND, aud: CARD, htm: 'GET', htu: '/cards/42',
    iat: now, exp: now + 30, jti: 'A'.repeat(22), ...claims,
  })
    .setProtectedHeader({ alg: 'ES256', typ: FINGERPRINT_TYP, ...header })
    .sign(caller.privateKey);
}

test('a signed fingerprint carries the bound claims and verifies once', async () => {
  const token = await signFingerprint(caller.privateKey, request);
  assert.equal(decodeProtectedHeader(token), { alg: 'ES256', typ: FINGERPRINT_TYP });
  const c = decodeJwt(token);
  assert.is(c.iss, FRONTEND);
  assert.is(c.sub, FRONTEND);
  assert.is(c.aud, CARD);
  assert.is(c.htm, 'GET');
  assert.is(c.htu, '/cards/42');
  assert.is((c.exp as number) - (c.iat as number), 30);
  assert.ok(base64url.decode(c.jti as string).length >= 16);
  assert.is(c.ath, undefined);
  const replay = new ReplayCache();
  const claims = await verifyFingerprint(token, callerCertKey, expect(), replay);
  assert.is(claims.jti, c.jti);
  assert.is(await reason(verifyFingerprint(token, callerCertKey, expect(), replay)), 'replayed');
});

test('interoperates with jose both ways', async () => {
  const ours = signFingerprint(caller.privateKey, request, { kid: 'k1' });
  const { payload, protectedHeader } = await jwtVerify(ours, callerCertKey, { algorithms: ['ES256'], typ: FINGERPRINT_TYP, audience: CARD, issuer: FRONTEND, subject: FRONTEND });
  assert.is(payload.htu, '/cards/42');
  assert.is(protectedHeader.kid, 'k1');
  const theirs = await forge({});
  const claims = await verifyFingerprint(theirs, callerCertKey, expect(), new ReplayCache());
  assert.is(claims.htm, 'GET');
});

test('each binding is checked', async () => {
  const token = () => signFingerprint(caller.privateKey, request);
  const check = async (opts: Partial<VerifyOptions>, key = callerCertKey) =>
    reason(verifyFingerprint(await token(), key, expect(opts), new ReplayCache()));
  assert.is(await check({}, otherCertKey), 'bad_signature');
  assert.is(await check({ caller: 'spiffe://bank.example/ns/web/sa/other' }), 'wrong_subject');
  assert.is(await check({ self: 'spiffe://bank.example/ns/x/sa/ledger' }), 'wrong_audience');
  assert.is(await check({ method: 'POST' }), 'wrong_method');
  assert.is(await check({ path: '/cards/43' }), 'wrong_url');
  assert.is(await check({ path: '/cards/42/' }), 'wrong_url');
  assert.is(await check({ now: Date.now() + 40_000 }), 'expired');
  assert.is(await check({ now: Date.now() - 10_000 }), 'iat_skew');
  assert.is(await check({ identityToken: 'eyJ.x.y' }), 'ath_mismatch');
});

test('the signature verdict is the same on the event loop and off it', async () => {
  for (const offLoop of [true, false]) {
    const check = (key: typeof callerCertKey) =>
      reason(verifyFingerprint(signFingerprint(caller.privateKey, request), key, expect({ offLoop }), new ReplayCache()));
    assert.is(await check(callerCertKey), 'accepted', `offLoop ${offLoop}`);
    assert.is(await check(otherCertKey), 'bad_signature', `offLoop ${offLoop}`);
    assert.is(await check(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey), 'bad_signature', `offLoop ${offLoop}: not P-256`);
  }
});

test('ath binds the identity-context token', async () => {
  const bound = await signFingerprint(caller.privateKey, { ...request, identityToken: 'tok-1' });
  assert.is(decodeJwt(bound).ath, tokenHash('tok-1'));
  const v = (tok?: string) => reason(verifyFingerprint(bound, callerCertKey, expect({ identityToken: tok }), new ReplayCache()));
  assert.is(await v('tok-1'), 'accepted');
  assert.is(await v('tok-2'), 'ath_mismatch');
  assert.is(await v(undefined), 'ath_mismatch'); // token stripped on the way
});

test('hostile headers and claims are refused with a reason', async () => {
  const v = async (t: string | Promise<string>) => reason(verifyFingerprint(await t, callerCertKey, expect(), new ReplayCache()));
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = b64({ iss: FRONTEND, sub: FRONTEND, aud: CARD, htm: 'GET', htu: '/cards/42', iat: now, exp: now + 30, jti: 'B'.repeat(22) });
  assert.is(await v(`${b64({ alg: 'none', typ: FINGERPRINT_TYP })}.${body}.`), 'malformed'); // empty signature part
  assert.is(await v(`${b64({ alg: 'none', typ: FINGERPRINT_TYP })}.${body}.AAAA`), 'bad_alg');
  const hs = await new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: FINGERPRINT_TYP }).sign(createSecretKey(Buffer.alloc(32)));
  assert.is(await v(hs), 'bad_alg');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  assert.is(await v(new SignJWT({}).setProtectedHeader({ alg: 'RS256', typ: FINGERPRINT_TYP }).sign(rsa)), 'bad_alg');
  assert.is(await v(forge({}, { typ: 'JWT' })), 'bad_typ');
  const critical = `${b64({ alg: 'ES256', typ: FINGERPRINT_TYP, crit: ['x'], x: 1 })}.${body}`;
  assert.is(await v(`${critical}.${sign('sha256', Buffer.from(critical), { key: caller.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`), 'malformed');
  assert.is(await v(forge({ nbf: now + 60 })), 'iat_skew');
  assert.is(await v(forge({ iss: 'spiffe://bank.example/ns/web/sa/x' })), 'wrong_issuer');
  assert.is(await v(forge({ exp: now + 300 })), 'lifetime_too_long');
  assert.is(await v(forge({ iat: now + 60, exp: now + 70 })), 'iat_skew');
  assert.is(await v(forge({ jti: 'short' })), 'malformed');
  assert.is(await v(forge({ aud: [CARD] })), 'malformed');
  assert.is(await v(forge({ htm: undefined })), 'malformed');
  assert.is(await v(forge({ iat: '1' })), 'malformed');
  assert.is(await v(forge({ pad: 'x'.repeat(5000) })), 'oversized');
  // Same bytes, other spelling: the unused low bits of the last base64url character.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const good = await signFingerprint(caller.privateKey, request);
  const twin = good.slice(0, -1) + alphabet[alphabet.indexOf(good.at(-1)!) ^ 1];
  assert.is(await v(twin), 'malformed');
  assert.is(await v(''), 'missing');
  assert.is(await v('a.b'), 'malformed');
  assert.is(await v('a+b.c.d'), 'malformed');
  assert.is(await v(`${b64('not an object')}.${body}.AAAA`), 'malformed');
  assert.is(await v(`bm90IGpzb24.${body}.AAAA`), 'malformed');
});

test('a part is malformed exactly when decoding and re-encoding would change it', async () => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const good = signFingerprint(caller.privateKey, request);
  const parts = good.split('.');
  for (let p = 0; p < 3; p++) {
    // Every last character, and one to three extra characters (every length modulo 4).
    const variants = [...alphabet].map((c) => parts[p].slice(0, -1) + c).concat(['A', 'AA', 'AAA'].map((s) => parts[p] + s));
    for (const part of variants) {
      const token = parts.map((x, i) => (i === p ? part : x)).join('.');
      const r = await reason(verifyFingerprint(token, callerCertKey, expect(), new ReplayCache()));
      if (token === good) assert.is(r, 'accepted');
      else if (Buffer.from(part, 'base64url').toString('base64url') !== part) assert.is(r, 'malformed', `part ${p}: ${part}`);
      else assert.is.not(r, 'accepted');
    }
  }
});

test('arbitrary input is only ever a FingerprintError', async () => {
  const good = await signFingerprint(caller.privateKey, request);
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.string({ maxLength: 200 }), fc.nat(good.length - 1).chain((i) => fc.string({ minLength: 1, maxLength: 3 }).map((s) => good.slice(0, i) + s + good.slice(i + 1)))), async (t) => {
      const r = await reason(verifyFingerprint(t, callerCertKey, expect(), new ReplayCache()));
      assert.is(r === 'accepted', t === good);
    }),
    { numRuns: 300 },
  );
});

test('replay cache: bounded, fails closed when full, recovers after expiry', () => {
  const cache = new ReplayCache(3);
  const now = 1_000;
  assert.is(cache.admit('a', now + 10, now), 'ok');
  assert.is(cache.admit('b', now + 20, now), 'ok');
  assert.is(cache.admit('a', now + 10, now + 5), 'replayed');
  assert.is(cache.admit('c', now + 30, now), 'ok');
  assert.is(cache.admit('d', now + 30, now), 'full');
  assert.is(cache.size, 3);
  // 'a' expired: its slot frees, nothing live is evicted.
  assert.is(cache.admit('d', now + 40, now + 11), 'ok');
  assert.is(cache.admit('b', now + 20, now + 11), 'replayed');
  assert.is(cache.size, 3);
  cache.sweep(now + 100);
  assert.is(cache.size, 0);
});

test('the replay cache rejects a fingerprint at capacity with 503', async () => {
  const cache = new ReplayCache(1);
  await verifyFingerprint(await signFingerprint(caller.privateKey, request), callerCertKey, expect(), cache);
  const err = await verifyFingerprint(await signFingerprint(caller.privateKey, request), callerCertKey, expect(), cache).catch((e) => e);
  assert.is(err.reason, 'replay_cache_full');
  assert.is(err.status, 503);
});

test.run();
