/**
 * Opaque tokens: introspection at the real provider, with the edge's client credentials; an
 * active answer is cached, never past the token's expiry nor longer than 60 s, so a token
 * revoked at the provider stops working within a minute.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { introspection, MAX_CACHE_SECONDS } from '../../../agent/edge/introspection.ts';
import { BearerError } from '../../../agent/edge/bearer-error.ts';
import { startLocalProvider, type LocalProvider } from '../../../testing/identity-provider.ts';

const test = suite('edge: token introspection');
let provider: LocalProvider;

test.before(async () => {
  provider = await startLocalProvider({ audience: 'bank-apis', scopes: ['list_cards'], users: {}, tokenTtlSeconds: 300 });
});

test.after(async () => {
  await provider.close();
});

const introspector = (clock: { ms: number }, client = provider.edgeClient) =>
  introspection({ endpoint: new URL(`${provider.issuer}/token/introspection`), clientId: client.id, clientSecret: client.secret, issuer: provider.issuer, audience: 'bank-apis', skewSeconds: 0, now: () => clock.ms });

const outcome = (p: Promise<unknown>) => p.then(() => 'active', (err: BearerError) => `${err.status} ${err.message}`);

test('a revoked token is served from the cache for at most 60 s, then refused', async () => {
  const clock = { ms: Date.now() };
  const introspect = introspector(clock);
  const token = await provider.clientToken(['list_cards'], 'opaque');
  assert.is((await introspect(token)).scope, 'list_cards');
  await provider.revoke(token);
  clock.ms += (MAX_CACHE_SECONDS - 1) * 1000;
  assert.is(await outcome(introspect(token)), 'active');
  clock.ms += 2000;
  assert.is(await outcome(introspect(token)), '401 the token is not active');
});

test('the cache never outlives the token', async () => {
  // Tokens that live 30 s: their cache entry ends with them, well before the 60 s bound.
  const shortLived = await startLocalProvider({ audience: 'bank-apis', scopes: ['list_cards'], users: {}, tokenTtlSeconds: 30 });
  try {
    const clock = { ms: Date.now() };
    const introspect = introspection({
      endpoint: new URL(`${shortLived.issuer}/token/introspection`), clientId: shortLived.edgeClient.id, clientSecret: shortLived.edgeClient.secret,
      issuer: shortLived.issuer, audience: 'bank-apis', skewSeconds: 0, now: () => clock.ms,
    });
    const token = await shortLived.clientToken(['list_cards'], 'opaque');
    const { exp } = await introspect(token);
    clock.ms = exp! * 1000 + 1000;
    assert.is(await outcome(introspect(token)), '401 the token expired');
  } finally {
    await shortLived.close();
  }
});

test('the edge authenticates as its client; without valid credentials nothing is active', async () => {
  const clock = { ms: Date.now() };
  const token = await provider.clientToken(['list_cards'], 'opaque');
  assert.match(await outcome(introspector(clock, { id: provider.edgeClient.id, secret: 'wrong' })(token)), /^503 token introspection failed/);
});

test.run();
