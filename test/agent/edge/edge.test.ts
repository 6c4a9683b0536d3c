/**
 * The edge against a real OpenID provider: tokens it issues get through to the service
 * with a minted identity context, and every token attack is refused at the edge with 401
 * and an RFC 6750 challenge, before anything reaches the mesh.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPublicKey } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, decodeJwt, decodeProtectedHeader } from 'jose';
import { request } from 'undici';
import { FINGERPRINT_HEADER } from '../../../spiffe/fingerprint.ts';
import { CONTEXT_TYP } from '../../../agent/sidecar/context-token.ts';
import { startPerimeter, decisionsAt, CARD, EDGE, AUDIENCE, type Perimeter } from './perimeter.ts';

const test = suite('edge: token translation at the ingress');
let p: Perimeter;
/** An attacker's JWKS server; nothing may ever fetch from it. */
let attacker: { url: string; hits: number; close(): Promise<void> };
let attackerKey: Awaited<ReturnType<typeof generateKeyPair>>;

test.before(async () => {
  p = await startPerimeter();
  attackerKey = await generateKeyPair('ES256', { extractable: true });
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(attackerKey.publicKey)), kid: 'attacker', alg: 'ES256' }] });
  const server = createServer((_req, res) => {
    attacker.hits++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(jwks);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  attacker = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`,
    hits: 0,
    close: () => new Promise((r) => server.close(() => r())),
  };
});

test.after(async () => {
  await attacker.close();
  await p.close();
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const alice = () => p.provider.login('alice', ['list_cards', 'profile']);
const attackerToken = (header: Record<string, unknown>, claims: Record<string, unknown> = {}) => {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub: 'alice', scope: 'list_cards', iss: p.provider.issuer, aud: AUDIENCE, iat: now, exp: now + 300, ...claims })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', ...header })
    .sign(attackerKey.privateKey);
};

/** Refused at the edge: the status, an RFC 6750 challenge, and nothing sent into the mesh. */
async function refused(headers: Record<string, string>, status = 401, code: string | null = 'invalid_token') {
  const seen = p.log.lines.length;
  const answer = await p.call('/cards', headers);
  assert.is(answer.status, status, answer.body);
  const challenge = String(answer.headers['www-authenticate']);
  assert.match(challenge, /^Bearer realm="palisade"/);
  if (code) assert.ok(challenge.includes(`error="${code}"`), challenge);
  else assert.not.match(challenge, /error=/);
  assert.is(p.log.lines.slice(seen).filter((l) => l.msg === 'decision').length, 0, 'nothing reached a sidecar');
  return answer;
}

test('a user token from the provider (authorization code + PKCE) reaches card-service with a minted context', async () => {
  const answer = await p.call('/cards', bearer(await alice()));
  assert.is(answer.status, 200, answer.body);
  const context = JSON.parse(answer.body).authorization.slice(7);
  assert.is(decodeProtectedHeader(context).typ, CONTEXT_TYP);
  const claims = decodeJwt(context);
  assert.is(claims.iss, EDGE);
  assert.is(claims.aud, CARD);
  assert.is(claims.sub, 'alice');
  assert.is(claims.scope, 'list_cards profile');
  assert.is(claims.client_id, 'bank-web');
  assert.is(claims.acr, 'mfa');
  assert.equal(claims.consent, ['pii']);
  assert.equal(claims.act, { sub: EDGE });
  assert.is(claims.htm, 'GET');
  assert.is(claims.htu, '/cards');
  assert.ok(claims.exp! - claims.iat! <= 60);
  assert.is(decisionsAt(p, CARD).at(-1)!.rule, 'list-cards');
});

test('a machine token (client credentials) and an opaque token (introspection) are accepted', async () => {
  assert.is((await p.call('/cards', bearer(await p.provider.clientToken(['list_cards'])))).status, 200);
  const opaque = await p.provider.clientToken(['list_cards'], 'opaque');
  const viaIntrospection = await p.call('/cards', bearer(opaque));
  assert.is(viaIntrospection.status, 200, viaIntrospection.body);
  await refused(bearer('not-a-token-the-provider-issued'));
});

test('a user without list_cards is refused by card-service (403), not by the edge', async () => {
  const answer = await p.call('/cards', bearer(await p.provider.login('bob', ['list_cards', 'profile'])));
  assert.is(answer.status, 403);
  assert.is(answer.headers['www-authenticate'], undefined);
  const decision = decisionsAt(p, CARD).at(-1)!;
  assert.is(decision.decision, 'deny');
  assert.is(decision.caller, EDGE);
});

test('no token, another scheme, a malformed or repeated header', async () => {
  await refused({}, 401, null);
  await refused({ authorization: 'Basic YWxpY2U6c2VjcmV0' }, 401, null);
  await refused({ authorization: 'Bearer a b' }, 400, 'invalid_request');
});

test('alg none is refused', async () => {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const token = `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64({ sub: 'alice', scope: 'list_cards', iss: p.provider.issuer, aud: AUDIENCE, iat: now, exp: now + 300 })}.`;
  await refused(bearer(token));
});

test('HS256 keyed with the provider\'s public key is refused', async () => {
  const jwks = (await (await fetch(`${p.provider.issuer}/jwks`)).json()) as { keys: (import('node:crypto').JsonWebKey & { kid: string })[] };
  const pem = createPublicKey({ key: jwks.keys[0], format: 'jwk' }).export({ type: 'spki', format: 'pem' });
  const now = Math.floor(Date.now() / 1000);
  for (const secret of [Buffer.from(pem), Buffer.from(JSON.stringify(jwks.keys[0]))]) {
    const token = await new SignJWT({ sub: 'alice', scope: 'list_cards', iss: p.provider.issuer, aud: AUDIENCE, iat: now, exp: now + 300 })
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: jwks.keys[0].kid })
      .sign(secret);
    await refused(bearer(token));
  }
});

test('a key not in the provider\'s JWKS is refused', async () => {
  await refused(bearer(await attackerToken({ kid: 'attacker' })));
});

test('jku, x5u and an embedded jwk are never followed or used', async () => {
  const jwk = await exportJWK(attackerKey.publicKey);
  await refused(bearer(await attackerToken({ kid: 'attacker', jku: attacker.url })));
  await refused(bearer(await attackerToken({ kid: 'attacker', x5u: attacker.url })));
  await refused(bearer(await attackerToken({ jwk })));
  assert.is(attacker.hits, 0, 'the attacker\'s key server was contacted');
});

test('wrong issuer, wrong audience, expired, not yet valid, issued in the future', async () => {
  const now = Math.floor(Date.now() / 1000);
  await refused(bearer(await p.provider.forge({ sub: 'alice', scope: 'list_cards', iss: 'https://login.evil.example' })));
  await refused(bearer(await p.provider.forge({ sub: 'alice', scope: 'list_cards', aud: 'another-api' })));
  await refused(bearer(await p.provider.forge({ sub: 'alice', scope: 'list_cards', iat: now - 600, exp: now - 120 })));
  await refused(bearer(await p.provider.forge({ sub: 'alice', scope: 'list_cards', nbf: now + 600 })));
  await refused(bearer(await p.provider.forge({ sub: 'alice', scope: 'list_cards', iat: now + 600, exp: now + 900 })));
  // The same forge with nothing wrong is accepted: the refusals above are the checks, not the forge.
  assert.is((await p.call('/cards', bearer(await p.provider.forge({ sub: 'alice', scope: 'list_cards' })))).status, 200);
});

test('a token of another type is refused when typ is configured', async () => {
  await refused(bearer(await p.provider.forge({ sub: 'alice', scope: 'list_cards' }, { typ: 'JWT' })));
});

test('an oversized token is refused before it is decoded', async () => {
  await refused(bearer(await p.provider.forge({ sub: 'alice', scope: 'list_cards', padding: 'x'.repeat(9000) })));
});

test('the client\'s own identity context and fingerprint never pass the edge', async () => {
  const token = await alice();
  const client = { [FINGERPRINT_HEADER]: 'forged', 'x-palisade-context': 'forged', 'x-forwarded-client-cert': 'By=x;URI=spiffe://bank.example/ns/ops/sa/admin' };
  assert.is((await p.call('/cards/recorded/1', { ...bearer(token), ...client })).status, 200);
  const sent = p.recorded.at(-1)!.headers;
  assert.is(sent['x-palisade-context'], undefined);
  assert.is(sent['x-forwarded-client-cert'], undefined);
  assert.is(decodeJwt(String(sent[FINGERPRINT_HEADER])).sub, EDGE);
  const context = String(sent.authorization).slice(7);
  assert.is(decodeJwt(context).iss, EDGE);
  // A minted context presented to the edge as if it were a user token: not the provider's.
  await refused(bearer(context));
});

test('the edge\'s own outbound listener sends nothing the edge did not authenticate', async () => {
  const seen = p.log.lines.length;
  for (const authorization of [undefined, `Bearer ${await alice()}`, 'Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']) {
    const res = await request(`${p.edge.meshUrl}/cards`, { headers: { host: 'route-0', ...(authorization && { authorization }) } });
    assert.is(res.statusCode, 401);
    assert.is(((await res.body.json()) as { error: { code: string } }).error.code, 'not_from_the_edge');
  }
  assert.is(p.log.lines.slice(seen).filter((l) => l.msg === 'decision').length, 0, 'nothing reached a sidecar');
});

test('paths with dot segments are refused before routing', async () => {
  const answer = await p.call('/cards/recorded/%2e%2e/1', bearer(await alice()));
  assert.is(answer.status, 400);
});

test.run();
