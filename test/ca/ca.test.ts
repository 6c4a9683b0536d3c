import { X509Certificate, createPrivateKey, webcrypto } from 'node:crypto';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CertificateAuthority } from '../../ca/ca.ts';
import { startCaServer, type CaServer } from '../../ca/server.ts';
import { createCsr, generateKeyPair } from '../../spiffe/pki.ts';
import { x509 } from '../../spiffe/x509.ts';
import { CARD, TD, caRequest, initCa, newCsr, removeDir, sleep } from '../support/identity.ts';

const test = suite<{ dir: string; server: CaServer; bundle: string }>('ca');

test.before(async (ctx) => {
  ctx.dir = await initCa();
  ctx.server = await startCaServer({ dir: ctx.dir, port: 0, svidTtlMs: 60_000, joinFailureLimit: 1000 });
  ctx.bundle = readFileSync(path.join(ctx.dir, 'bundle.pem'), 'utf8');
});
test.after(async (ctx) => {
  await ctx.server.close();
  removeDir(path.dirname(ctx.dir));
});

/**
 * An SVID of this CA (same root, same store) that expired before it is used: issued with the
 * CA's clock an hour back, instead of waiting for a short-lived one to run out.
 */
async function mintExpired(dir: string) {
  const past = await CertificateAuthority.open(dir, { now: () => Date.now() - 3_600_000 });
  try {
    const svid = await past.mint(CARD, 60_000);
    assert.ok(Date.parse(svid.not_after) < Date.now(), 'expired when used');
    return svid;
  } finally {
    await past.close();
  }
}

function join(ctx: { server: CaServer; bundle: string }, body: object | string, contentType?: string) {
  return caRequest(`${ctx.server.url}/v1/join`, ctx.bundle, { body, contentType });
}

test('init writes a P-256 root, a 0600 key and the bundle; serve refuses a readable key', async (ctx) => {
  const root = new X509Certificate(ctx.bundle);
  assert.ok(root.ca);
  assert.is(root.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const keyPath = path.join(ctx.dir, 'ca-key.pem');
  assert.is(statSync(keyPath).mode & 0o777, 0o600);
  chmodSync(keyPath, 0o640);
  try {
    assert.match(await CertificateAuthority.open(ctx.dir).then(() => 'succeeded', (err: Error) => err.message), /accessible by group or others/);
  } finally {
    chmodSync(keyPath, 0o600);
  }
  const again = await CertificateAuthority.init(ctx.dir, TD).then(() => null, (err: Error) => err.message);
  assert.match(again ?? '', /already holds a CA/);
});

test('join: token + CSR → X.509-SVID after the SPIFFE standard, key in the live JWKS', async (ctx) => {
  const { token } = await ctx.server.ca.createToken(CARD, 60_000);
  const { keys, csr } = await newCsr();
  const res = await join(ctx, { token, csr });
  assert.is(res.status, 200, JSON.stringify(res.json));
  assert.is(res.json.spiffe_id, CARD);
  const cert = new x509.X509Certificate(res.json.svid_pem);
  const node = new X509Certificate(res.json.svid_pem);
  assert.ok(node.verify(new X509Certificate(ctx.bundle).publicKey), 'signed by the root');
  assert.is(node.subjectAltName, `URI:${CARD}`);
  assert.not.ok(node.ca);
  const ku = cert.getExtension(x509.KeyUsagesExtension)!;
  assert.is(ku.usages, x509.KeyUsageFlags.digitalSignature);
  assert.ok(ku.critical);
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)!;
  assert.equal([...eku.usages].sort(), [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth].sort());
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey as unknown as webcrypto.CryptoKey));
  assert.ok(node.publicKey.export({ type: 'spki', format: 'der' }).equals(spki), 'certifies the CSR key');
  const lifetime = Date.parse(node.validTo) - Date.now();
  assert.ok(lifetime > 55_000 && lifetime <= 60_000, `ttl honoured (${lifetime})`);

  const jwks = await caRequest(`${ctx.server.url}/v1/jwks`, ctx.bundle);
  const jwk = node.publicKey.export({ format: 'jwk' });
  assert.ok(jwks.json.keys.some((k: any) => k.x === jwk.x && k.y === jwk.y && typeof k.kid === 'string' && k.kid.length === 43));
});

test('tokens: replay, unknown and expired are refused with stable codes', async (ctx) => {
  const { token } = await ctx.server.ca.createToken(CARD, 60_000);
  assert.is((await join(ctx, { token, csr: (await newCsr()).csr })).status, 200);
  const replay = await join(ctx, { token, csr: (await newCsr()).csr });
  assert.is(replay.status, 401);
  assert.is(replay.json.error.code, 'token_used');
  const unknown = await join(ctx, { token: 'pjt_nope', csr: (await newCsr()).csr });
  assert.is(unknown.json.error.code, 'token_unknown');
  const short = await ctx.server.ca.createToken(CARD, 5);
  await sleep(20);
  const expired = await join(ctx, { token: short.token, csr: (await newCsr()).csr });
  assert.is(expired.status, 401);
  assert.is(expired.json.error.code, 'token_expired');
});

test('20 concurrent joins with one token yield exactly one SVID', async (ctx) => {
  const { token } = await ctx.server.ca.createToken(CARD, 60_000);
  const csrs = await Promise.all(Array.from({ length: 20 }, newCsr));
  const results = await Promise.all(csrs.map(({ csr }) => join(ctx, { token, csr })));
  assert.is(results.filter((r) => r.status === 200).length, 1);
  assert.ok(results.every((r) => r.status === 200 || r.json.error.code === 'token_used'));
});

test('bad input: content type, JSON, size, CSR signature, key type, foreign identity; token survives', async (ctx) => {
  const { token } = await ctx.server.ca.createToken(CARD, 60_000);
  const { csr } = await newCsr();
  const cases: [object | string, string | undefined, number, string][] = [
    [`token=${token}`, 'application/x-www-form-urlencoded', 415, 'unsupported_media_type'],
    ['{"token":', undefined, 400, 'invalid_json'],
    [{ token, csr: 'x'.repeat(20_000) }, undefined, 413, 'body_too_large'],
    [[1, 2], undefined, 400, 'invalid_request'],
    [{ token: 5, csr }, undefined, 400, 'invalid_request'],
    [{ token, csr: 'not a csr' }, undefined, 400, 'invalid_csr'],
    [{ token, csr: tamper(csr) }, undefined, 400, 'csr_signature_invalid'],
    [{ token, csr: await p384Csr() }, undefined, 400, 'unsupported_key'],
    [{ token, csr: await csrAsking(`spiffe://${TD}/ns/payments/sa/admin`) }, undefined, 403, 'identity_mismatch'],
  ];
  for (const [body, type, status, code] of cases) {
    const res = await join(ctx, body, type);
    assert.is(res.status, status, `${code}: ${JSON.stringify(res.json)}`);
    assert.is(res.json.error.code, code);
  }
  const notFound = await caRequest(`${ctx.server.url}/v1/admin`, ctx.bundle);
  assert.is(notFound.json.error.code, 'not_found');
  // Nothing was consumed by the failed attempts: the token still works, asking for its own ID is fine.
  assert.is((await join(ctx, { token, csr: await csrAsking(CARD) })).status, 200);
});

test('renew over mTLS: same identity, new key; refused without, with foreign, revoked or expired certificates', async (ctx) => {
  const first = await ctx.server.ca.mint(CARD, 60_000);
  const client = { cert: first.svid_pem, key: first.key_pem };
  const renew = (creds: { cert?: string; key?: string }, csr: string) =>
    caRequest(`${ctx.server.url}/v1/renew`, ctx.bundle, { body: { csr }, ...creds });
  const ok = await renew(client, (await newCsr()).csr);
  assert.is(ok.status, 200, JSON.stringify(ok.json));
  assert.is(ok.json.spiffe_id, CARD);
  assert.is.not(ok.json.serial, first.serial);

  assert.is((await renew({}, (await newCsr()).csr)).json.error.code, 'client_certificate_required');
  const otherDir = await initCa();
  const other = await CertificateAuthority.open(otherDir);
  const foreign = await other.mint(CARD, 60_000);
  await other.close();
  removeDir(path.dirname(otherDir));
  assert.is((await renew({ cert: foreign.svid_pem, key: foreign.key_pem }, (await newCsr()).csr)).json.error.code, 'client_certificate_invalid');
  const mismatch = await renew(client, await csrAsking(`spiffe://${TD}/ns/payments/sa/admin`));
  assert.is(mismatch.json.error.code, 'identity_mismatch');

  await ctx.server.ca.revoke(first.serial);
  assert.match(await ctx.server.ca.revoke('abcdef').then(() => 'succeeded', (err: Error) => err.message), /no SVID with serial abcdef/);
  const revoked = await renew(client, (await newCsr()).csr);
  assert.is(revoked.status, 401);
  assert.is(revoked.json.error.code, 'svid_revoked');

  const short = await mintExpired(ctx.dir);
  const expired = await renew({ cert: short.svid_pem, key: short.key_pem }, (await newCsr()).csr);
  // The TLS layer or the CA refuses it; either way a 401 with a stable code, never a 500.
  assert.is(expired.status, 401);
  assert.is(expired.json.error.code, 'svid_expired');
});

test('a key is certified once: a stolen, revoked key cannot be made live again by another join or a renewal', async (ctx) => {
  // The thief holds a revoked SVID of card and its key, and a join token of a service of its own.
  const stolen = await ctx.server.ca.mint(CARD, 60_000);
  await ctx.server.ca.revoke(stolen.serial);
  const kidOf = (pem: string) => new X509Certificate(pem).publicKey.export({ format: 'jwk' }).x;
  const liveKeys = async () => (await caRequest(`${ctx.server.url}/v1/jwks`, ctx.bundle)).json.keys.map((k: any) => k.x);
  assert.not.ok((await liveKeys()).includes(kidOf(stolen.svid_pem)));
  const { token } = await ctx.server.ca.createToken(`spiffe://${TD}/ns/thief/sa/own`, 60_000);
  const stolenKeyCsr = createCsr(createPrivateKey(stolen.key_pem));
  const rejoin = await join(ctx, { token, csr: stolenKeyCsr });
  assert.is(rejoin.status, 409, JSON.stringify(rejoin.json));
  assert.is(rejoin.json.error.code, 'key_reused');
  assert.match(rejoin.json.error.message, new RegExp(`serial ${stolen.serial}`));
  // Had it been certified, the JWKS would vouch for the key again, and with it for the revoked SVID.
  assert.not.ok((await liveKeys()).includes(kidOf(stolen.svid_pem)));
  // The refusal spent nothing: the token still joins with a key of its own.
  assert.is((await join(ctx, { token, csr: (await newCsr()).csr })).status, 200);

  // A renewal must bring a new key too: the same key would outlive the rotation meant to retire it.
  const current = await ctx.server.ca.mint(CARD, 60_000);
  const sameKey = await caRequest(`${ctx.server.url}/v1/renew`, ctx.bundle, {
    body: { csr: createCsr(createPrivateKey(current.key_pem)) }, cert: current.svid_pem, key: current.key_pem,
  });
  assert.is(sameKey.status, 409);
  assert.is(sameKey.json.error.code, 'key_reused');
});

test('live JWKS drops revoked and expired keys; bundle in PEM and SPIFFE JWKS form; health', async (ctx) => {
  const kept = await ctx.server.ca.mint(CARD, 60_000);
  const revoked = await ctx.server.ca.mint(CARD, 60_000);
  const expiring = await mintExpired(ctx.dir);
  const xOf = (pem: string) => new X509Certificate(pem).publicKey.export({ format: 'jwk' }).x;
  await ctx.server.ca.revoke(revoked.serial);
  const keys = (await caRequest(`${ctx.server.url}/v1/jwks`, ctx.bundle)).json.keys.map((k: any) => k.x);
  assert.ok(keys.includes(xOf(kept.svid_pem)));
  assert.not.ok(keys.includes(xOf(revoked.svid_pem)));
  assert.not.ok(keys.includes(xOf(expiring.svid_pem)));

  assert.is((await caRequest(`${ctx.server.url}/v1/bundle`, ctx.bundle)).json, ctx.bundle);
  const spiffeBundle = (await caRequest(`${ctx.server.url}/v1/bundle/jwks`, ctx.bundle)).json;
  assert.is(spiffeBundle.keys[0].use, 'x509-svid');
  assert.is(new X509Certificate(Buffer.from(spiffeBundle.keys[0].x5c[0], 'base64')).fingerprint256, new X509Certificate(ctx.bundle).fingerprint256);
  assert.equal((await caRequest(`${ctx.server.url}/healthz`, ctx.bundle)).json, { status: 'ok', trust_domain: TD });
});

test('failed join attempts are rate limited per address', async () => {
  const dir = await initCa();
  const server = await startCaServer({ dir, port: 0, joinFailureLimit: 3 });
  const bundle = readFileSync(path.join(dir, 'bundle.pem'), 'utf8');
  try {
    const { csr } = await newCsr();
    for (let i = 0; i < 3; i++) {
      const res = await caRequest(`${server.url}/v1/join`, bundle, { body: { token: `guess-${i}`, csr } });
      assert.is(res.json.error.code, 'token_unknown');
    }
    const { token } = await server.ca.createToken(CARD, 60_000);
    const limited = await caRequest(`${server.url}/v1/join`, bundle, { body: { token, csr } });
    assert.is(limited.status, 429);
    assert.is(limited.json.error.code, 'rate_limited');
    assert.ok(Number(limited.headers['retry-after']) > 0);
  } finally {
    await server.close();
    removeDir(path.dirname(dir));
  }
});

function tamper(pem: string): string {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 5] ^= 0x01; // inside the signature
  return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
}

async function p384Csr(): Promise<string> {
  const alg = { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
  return (await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: alg })).toString('pem');
}

async function csrAsking(uri: string): Promise<string> {
  const { keys } = await generateKeyPair();
  const alg = { name: 'ECDSA', hash: 'SHA-256' };
  const extensions = [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }])];
  return (await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: alg, extensions })).toString('pem');
}

test.run();
