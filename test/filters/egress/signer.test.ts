/**
 * The agent's signing endpoint over real HTTP: what it signs (only as itself), and every
 * refusal with its stable code.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { request } from 'undici';
import { decodeProtectedHeader } from 'jose';
import { createAdmin } from '../../../agent/identity/admin.ts';
import { signEndpoint } from '../../../agent/sidecar/sign-endpoint.ts';
import { tokenHash, verifyFingerprint } from '../../../spiffe/fingerprint.ts';
import { ReplayCache } from '../../../spiffe/replay-cache.ts';
import { X509Certificate } from 'node:crypto';
import { freePort, palisade, palisadeRun } from '../../support/identity.ts';
import { CALLER, CARD, SIGN_PATH, startSigningAgent, type SigningAgent } from './harness.ts';

const test = suite<{ world: SigningAgent }>('signing endpoint');
test.before(async (ctx) => {
  ctx.world = await startSigningAgent({ ttlSeconds: 20 });
});
test.after(async (ctx) => {
  await ctx.world.close();
});

async function sign(authority: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await request(`http://${authority}${SIGN_PATH}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.statusCode, json: await res.body.json() };
}

test('signs as the agent itself, for the given aud/htm/htu, with the CA\'s kid and the configured lifetime', async (ctx) => {
  const { status, json } = await sign(ctx.world.authority, { aud: CARD, htm: 'PUT', htu: '/cards/1', identity_token: 'a.b.c' });
  assert.is(status, 200);
  assert.equal(Object.keys(json).sort(), ['exp', 'token']);
  const svid = ctx.world.agent.svid();
  const claims = await verifyFingerprint(json.token, svid.certificate.publicKey, {
    self: CARD, caller: CALLER, method: 'PUT', path: '/cards/1', identityToken: 'a.b.c',
  }, new ReplayCache());
  assert.equal([claims.iss, claims.sub, claims.ath], [CALLER, CALLER, tokenHash('a.b.c')]);
  assert.is(claims.exp - claims.iat, 20);
  assert.is(json.exp, claims.exp);
  const kid = decodeProtectedHeader(json.token).kid;
  assert.ok(((await ctx.world.ca.ca.liveJwks()).keys as { kid: string }[]).some((k) => k.kid === kid));
});

const refusals: [string, unknown, number, string][] = [
  ['another issuer', { aud: CARD, htm: 'GET', htu: '/', iss: 'spiffe://bank.example/ns/x/sa/admin' }, 400, 'unknown_field'],
  ['another subject', { aud: CARD, htm: 'GET', htu: '/', sub: 'spiffe://bank.example/ns/x/sa/admin' }, 400, 'unknown_field'],
  ['no aud', { htm: 'GET', htu: '/' }, 400, 'invalid_aud'],
  ['an aud that is not a SPIFFE ID', { aud: 'https://card', htm: 'GET', htu: '/' }, 400, 'invalid_aud'],
  ['a trust domain as aud', { aud: 'spiffe://bank.example', htm: 'GET', htu: '/' }, 400, 'invalid_aud'],
  ['a method with a space', { aud: CARD, htm: 'GET /', htu: '/' }, 400, 'invalid_htm'],
  ['a numeric method', { aud: CARD, htm: 1, htu: '/' }, 400, 'invalid_htm'],
  ['a path with a query', { aud: CARD, htm: 'GET', htu: '/a?b=1' }, 400, 'invalid_htu'],
  ['a relative path', { aud: CARD, htm: 'GET', htu: 'a' }, 400, 'invalid_htu'],
  ['a path with a control character', { aud: CARD, htm: 'GET', htu: '/a\nb' }, 400, 'invalid_htu'],
  ['an identity token with spaces', { aud: CARD, htm: 'GET', htu: '/', identity_token: 'a b' }, 400, 'invalid_identity_token'],
  ['an array', [CARD], 400, 'invalid_body'],
  ['null', 'null', 400, 'invalid_body'],
  ['broken JSON', '{"aud":', 400, 'invalid_json'],
  ['a huge body', JSON.stringify({ aud: CARD, htm: 'GET', htu: `/${'a'.repeat(20000)}` }), 413, 'body_too_large'],
];
for (const [what, body, status, code] of refusals) {
  test(`refuses ${what}: ${status} ${code}`, async (ctx) => {
    const res = await sign(ctx.world.authority, body);
    assert.is(res.status, status);
    assert.is(res.json.error.code, code);
    assert.type(res.json.error.message, 'string');
  });
}

test('refuses other media types and non-loopback Host names', async (ctx) => {
  const text = await sign(ctx.world.authority, 'aud=x', { 'content-type': 'text/plain' });
  assert.equal([text.status, text.json.error.code], [415, 'unsupported_media_type']);
  const rebound = await sign(ctx.world.authority, { aud: CARD, htm: 'GET', htu: '/' }, { host: 'attacker.example:15090' });
  assert.equal([rebound.status, rebound.json.error.code], [403, 'bad_host']);
});

test('an expired SVID signs nothing: 503 svid_expired', async (ctx) => {
  const { agent } = ctx.world;
  const admin = await createAdmin({ agent, port: 0, plugins: [signEndpoint({ identity: agent, now: () => agent.svid().notAfter.getTime() + 1 })] });
  try {
    const { port } = await admin.listen();
    const res = await sign(`127.0.0.1:${port}`, { aud: CARD, htm: 'GET', htu: '/' });
    assert.equal([res.status, res.json.error.code], [503, 'svid_expired']);
  } finally {
    await admin.close();
  }
});

test('palisade agent --egress-signer serves the endpoint on --admin with the agent\'s SVID', async (ctx) => {
  const { ca, bundlePath } = ctx.world;
  const port = await freePort();
  const { token } = await ca.ca.createToken(CALLER, 60_000);
  const agent = palisade(['agent', '--ca-url', ca.url, '--bundle', bundlePath, '--token', token, '--admin', `127.0.0.1:${port}`, '--egress-signer']);
  try {
    await agent.waitFor(/agent ready/);
    const res = await sign(`127.0.0.1:${port}`, { aud: CARD, htm: 'GET', htu: '/cards' });
    assert.is(res.status, 200, JSON.stringify(res.json));
    const svid = await (await fetch(`http://127.0.0.1:${port}/v1/svid`)).json();
    const key = new X509Certificate(svid.certificate_pem).publicKey;
    const claims = await verifyFingerprint(res.json.token, key, { self: CARD, caller: CALLER, method: 'GET', path: '/cards' }, new ReplayCache());
    assert.is(claims.sub, CALLER);
  } finally {
    await agent.stop();
  }
});

test('palisade agent --egress-signer without --admin: exit 2 with the fix', async (ctx) => {
  const { ca, bundlePath } = ctx.world;
  const { token } = await ca.ca.createToken(CALLER, 60_000);
  const { code, output } = await palisadeRun(['agent', '--ca-url', ca.url, '--bundle', bundlePath, '--token', token, '--egress-signer']);
  assert.is(code, 2);
  assert.match(output, '--egress-signer needs --admin');
});

test.run();
