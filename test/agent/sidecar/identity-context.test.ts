import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSecretKey } from 'node:crypto';
import { SignJWT } from 'jose';
import { createIdentityVerifier, IdentityContextError, type IdentityVerifier } from '../../../agent/sidecar/identity-context.ts';
import { createIssuer } from './issuer.ts';

const issuer = await createIssuer();
const stranger = await createIssuer(); // same claims, key not in the JWKS
const dir = await mkdtemp(join(tmpdir(), 'palisade-idctx-'));
const jwksFile = join(dir, 'jwks.json');
await writeFile(jwksFile, JSON.stringify(issuer.jwks));
const verify = await createIdentityVerifier({ issuer: issuer.iss, audience: issuer.aud, jwks: jwksFile });

async function outcome(v: IdentityVerifier, header: string | undefined): Promise<string> {
  try {
    const ctx = await v(header);
    return ctx ? `user:${ctx.claims.sub}` : 'none';
  } catch (err) {
    assert.instance(err, IdentityContextError);
    return (err as IdentityContextError).reason;
  }
}
const bearer = (t: string) => `Bearer ${t}`;

test('a valid token yields its claims; no header yields no user', async () => {
  const token = await issuer.token({ sub: 'alice', scope: 'list_cards', acr: 'mfa' });
  const ctx = await verify(bearer(token));
  assert.is(ctx?.token, token);
  assert.is(ctx?.claims.scope, 'list_cards');
  assert.is(await outcome(verify, undefined), 'none');
});

test('invalid tokens are refused with a reason', async () => {
  const now = Math.floor(Date.now() / 1000);
  assert.is(await outcome(verify, bearer(await issuer.token({ sub: 'a' }, { exp: now - 120 }))), 'expired');
  assert.is(await outcome(verify, bearer(await issuer.token({ sub: 'a' }, { nbf: now + 600 }))), 'bad_nbf');
  assert.is(await outcome(verify, bearer(await issuer.token({ sub: 'a', iss: 'https://evil.example' }))), 'bad_iss');
  assert.is(await outcome(verify, bearer(await issuer.token({ sub: 'a', aud: 'other' }))), 'bad_aud');
  assert.is(await outcome(verify, bearer(await issuer.token({ sub: 'a' }, { exp: undefined }))), 'bad_exp');
  assert.is(await outcome(verify, bearer(await stranger.token({ sub: 'a', iss: issuer.iss, aud: issuer.aud }, { kid: issuer.kid }))), 'bad_signature');
  assert.is(await outcome(verify, bearer(await stranger.token({ sub: 'a', iss: issuer.iss, aud: issuer.aud }))), 'unknown_key');
  const hs = await new SignJWT({ sub: 'a', iss: issuer.iss, aud: issuer.aud, exp: now + 60 })
    .setProtectedHeader({ alg: 'HS256' }).sign(createSecretKey(Buffer.alloc(32)));
  assert.is(await outcome(verify, bearer(hs)), 'bad_alg');
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(`{"sub":"a","exp":${now + 60}}`).toString('base64url')}.`;
  assert.is(await outcome(verify, bearer(none)), 'bad_alg');
  assert.is(await outcome(verify, 'Basic YWxpY2U6cHc='), 'not_bearer');
  assert.is(await outcome(verify, 'Bearer a b'), 'not_bearer');
  assert.is(await outcome(verify, bearer('x'.repeat(9000))), 'oversized');
  assert.is(await outcome(verify, bearer('abc.def.ghi')), 'malformed');
});

test('a token verified before is checked for expiry again on every use', async () => {
  const strict = await createIdentityVerifier({ issuer: issuer.iss, audience: issuer.aud, jwks: jwksFile, skewSeconds: 0 });
  const exp = Math.floor(Date.now() / 1000) + 2;
  const token = await issuer.token({ sub: 'carol' }, { exp });
  assert.is(await outcome(strict, bearer(token)), 'user:carol');
  assert.is(await outcome(strict, bearer(token)), 'user:carol');
  await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 50));
  assert.is(await outcome(strict, bearer(token)), 'expired');
});

test('keys can come from a JWKS URL', async () => {
  const server = createServer((_req, res) => res.setHeader('content-type', 'application/json').end(JSON.stringify(issuer.jwks)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
    const remote = await createIdentityVerifier({ issuer: issuer.iss, audience: issuer.aud, jwks: url });
    assert.is(await outcome(remote, bearer(await issuer.token({ sub: 'bob' }))), 'user:bob');
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('a missing or broken JWKS file is a clear startup error', async () => {
  const bad = join(dir, 'bad.json');
  await writeFile(bad, '{"keys": 1}');
  for (const jwks of [join(dir, 'absent.json'), bad]) {
    const err = await createIdentityVerifier({ issuer: 'i', audience: 'a', jwks }).catch((e) => e);
    assert.match(err.message, jwks);
  }
});

test.after(() => rm(dir, { recursive: true, force: true }));
test.run();
