/**
 * The compiled egress filter in the strict host, its signer cluster wired over real HTTP to
 * a real agent's admin server: forwarded requests carry a fingerprint that verifies for
 * the right target, method and path; a failing agent never lets a request through.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet } from 'jose';
import { compactVerify } from 'jose';
import { FINGERPRINT_HEADER, tokenHash, verifyFingerprint, type FingerprintClaims } from '../../../spiffe/fingerprint.ts';
import { ReplayCache } from '../../../spiffe/replay-cache.ts';
import type { Filter, HttpCallRequest, Outcome } from '../../../host/index.ts';
import {
  CALLER, CARD, LEDGER, SIGN_PATH, egressConfiguration, egressFilter, headerOf, httpCluster, startSigningAgent, text, type SigningAgent,
} from './harness.ts';

interface Ctx {
  world: SigningAgent;
  filter: Filter;
  seen: HttpCallRequest[];
  closeCluster: () => Promise<void>;
}
const test = suite<Ctx>('egress filter with a real agent');

test.before(async (ctx) => {
  ctx.world = await startSigningAgent();
  ctx.seen = [];
  const { cluster, close } = httpCluster(`http://${ctx.world.authority}`, ctx.seen);
  ctx.closeCluster = close;
  ctx.filter = await egressFilter(cluster, egressConfiguration(ctx.world.authority));
});
test.after(async (ctx) => {
  await ctx.filter.close();
  await ctx.closeCluster();
  await ctx.world.close();
});

const replay = new ReplayCache();

/** The forwarded request's one fingerprint, verified as the target's inbound side would. */
async function verified(ctx: Ctx, o: Outcome, target: string, method: string, path: string, identityToken?: string): Promise<FingerprintClaims> {
  assert.is(o.kind, 'forward', `${o.status} ${text(o.body)}`);
  const values = headerOf(o.upstreamRequest!.headers, FINGERPRINT_HEADER);
  assert.is(values.length, 1);
  const key = ctx.world.agent.svid().certificate.publicKey;
  return verifyFingerprint(values[0], key, { self: target, caller: CALLER, method, path, identityToken }, replay);
}

test('a request leaves with a fingerprint for its target, method and path (query ignored)', async (ctx) => {
  const calls = ctx.seen.length;
  const o = await ctx.filter.handleRequest({ method: 'GET', path: '/cards/42?expand=owner', authority: 'card:15001' });
  const claims = await verified(ctx, o, CARD, 'GET', '/cards/42?expand=owner');
  assert.equal([claims.iss, claims.sub, claims.aud, claims.htm, claims.htu], [CALLER, CALLER, CARD, 'GET', '/cards/42']);
  assert.is(claims.ath, undefined);
  assert.ok(claims.exp - claims.iat <= 30);
  // exactly one call, as the bootstrap's signer cluster would carry it
  assert.is(ctx.seen.length, calls + 1);
  const call = ctx.seen.at(-1)!;
  assert.is(call.cluster, 'palisade_signer');
  assert.equal(call.headers.filter(([k]) => k.startsWith(':')), [[':method', 'POST'], [':path', SIGN_PATH], [':authority', ctx.world.authority]]);
  assert.equal(JSON.parse(text(call.body)), { aud: CARD, htm: 'GET', htu: '/cards/42' });
  assert.is(call.timeoutMs, 1000);
});

test('Envoy\'s jwt_authn finds the key: kid is the thumbprint the CA\'s JWKS of live keys publishes', async (ctx) => {
  const o = await ctx.filter.handleRequest({ method: 'DELETE', path: '/ledger/7', authority: 'Ledger' });
  await verified(ctx, o, LEDGER, 'DELETE', '/ledger/7');
  const token = headerOf(o.upstreamRequest!.headers, FINGERPRINT_HEADER)[0];
  const jwks = (await ctx.world.ca.ca.liveJwks()) as JSONWebKeySet;
  const { kid } = decodeProtectedHeader(token);
  assert.ok(jwks.keys.some((k) => k.kid === kid));
  await compactVerify(token, createLocalJWKSet(jwks)); // selects by kid, as jwt_authn does
});

test('the bearer token is bound (ath); an app-supplied fingerprint header is replaced; the body follows', async (ctx) => {
  const bearer = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2ln';
  const o = await ctx.filter.handleRequest({
    method: 'POST',
    path: '/cards',
    authority: 'card',
    headers: { authorization: `Bearer ${bearer}`, [FINGERPRINT_HEADER]: 'forged.by.app', 'content-type': 'application/json' },
    body: '{"amount":5}',
  });
  const claims = await verified(ctx, o, CARD, 'POST', '/cards', bearer);
  assert.is(claims.ath, tokenHash(bearer));
  assert.is(text(o.upstreamRequest!.body), '{"amount":5}');
  assert.equal(headerOf(o.upstreamRequest!.headers, 'authorization'), [`Bearer ${bearer}`]);
});

test('concurrent requests each wait for their own answer and get their own fingerprint', async (ctx) => {
  const paths = Array.from({ length: 24 }, (_, i) => `/cards/${i}`);
  const outcomes = await Promise.all(paths.map((path) => ctx.filter.handleRequest({ method: 'GET', path, authority: 'card' })));
  const jtis = new Set<string>();
  for (const [i, o] of outcomes.entries()) jtis.add((await verified(ctx, o, CARD, 'GET', paths[i])).jti);
  assert.is(jtis.size, paths.length);
});

test('after the agent rotates its SVID, fingerprints are signed with the new key', async (ctx) => {
  const before = ctx.world.agent.svid();
  await ctx.world.agent.rotate();
  const after = ctx.world.agent.svid();
  assert.is.not(after.serial, before.serial);
  const o = await ctx.filter.handleRequest({ method: 'GET', path: '/cards/1', authority: 'card' });
  await verified(ctx, o, CARD, 'GET', '/cards/1');
  const token = headerOf(o.upstreamRequest!.headers, FINGERPRINT_HEADER)[0];
  let oldKeyAccepts = true;
  await compactVerify(token, before.certificate.publicKey).catch(() => (oldKeyAccepts = false));
  assert.not.ok(oldKeyAccepts);
});

test('a Host with no route: 404 unknown_service (as the router would answer), no signing call, nothing forwarded', async (ctx) => {
  const calls = ctx.seen.length;
  const o = await ctx.filter.handleRequest({ method: 'GET', path: '/', authority: 'evil.example', headers: { 'x-request-id': 'r-1' } });
  assert.equal([o.kind, o.status, o.upstreamRequest], ['reply', 404, null]);
  assert.equal(JSON.parse(text(o.body)), { error: 'unknown_service', request_id: 'r-1' });
  assert.is(ctx.seen.length, calls);
});

test('what cannot be signed byte for byte is refused with 400, unsigned', async (ctx) => {
  const o = await ctx.filter.handleRequest({ method: 'GET', path: '/caf\u00e9', authority: 'card' });
  assert.equal([o.kind, o.status, o.upstreamRequest], ['reply', 400, null]);
  assert.is(JSON.parse(text(o.body)).error, 'bad_request');
});

test('the agent refusing to sign (its 400 for an aud without a path) is a 503', async (ctx) => {
  const filter = await egressFilter(
    httpCluster(`http://${ctx.world.authority}`).cluster,
    egressConfiguration(ctx.world.authority, { odd: 'spiffe://bank.example' }),
  );
  try {
    const o = await filter.handleRequest({ method: 'GET', path: '/', authority: 'odd' });
    assert.equal([o.kind, o.status, o.upstreamRequest], ['reply', 503, null]);
    assert.ok(o.logs.some((l) => l.level === 'warn' && l.message === 'palisade.egress fingerprint_unavailable reason=agent_status'));
  } finally {
    await filter.close();
  }
});

test('metrics count signed and failed fingerprints', (ctx) => {
  const m = ctx.filter.metrics();
  assert.ok(m['palisade_egress_fingerprints.result=signed'].value >= 28);
  assert.is(m['palisade_egress_fingerprints.result=failed'].value, 0);
});

test.run();
