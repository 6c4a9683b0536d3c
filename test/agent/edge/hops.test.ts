/**
 * Every hop: the context the edge minted for card-service is re-issued by card-service's
 * sidecar for the ledger with the delegation chain in `act`, and a context is good for one
 * request, to one audience, from the one workload that holds its signing key, whose SVID
 * must still be live at the CA.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeJwt } from 'jose';
import { Agent } from 'undici';
import type { IdentityAgent } from '../../../agent/identity/agent.ts';
import { FINGERPRINT_HEADER, signFingerprint } from '../../../spiffe/fingerprint.ts';
import { eventually } from '../../support/identity.ts';
import { mintContext } from '../../../agent/sidecar/context-token.ts';
import { startPerimeter, decisionsAt, CARD, EDGE, LEDGER, type Perimeter } from './perimeter.ts';

const test = suite('edge: the user context at every hop');
let p: Perimeter;

test.before(async () => {
  p = await startPerimeter();
});

test.after(async () => {
  await p.close();
});

const alice = async () => ({ authorization: `Bearer ${await p.provider.login('alice', ['list_cards'])}` });

/** A direct mTLS request to a sidecar as `who`, with a fresh valid fingerprint for exactly this request. */
async function asWorkload(who: IdentityAgent, base: string, target: string, path: string, context: string) {
  const svid = who.svid();
  const fingerprint = signFingerprint(svid.privateKey, { caller: svid.spiffeId, target, method: 'GET', path, identityToken: context });
  const dispatcher = new Agent({ connect: { ca: p.bundle, cert: svid.chainPem, key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }), checkServerIdentity: () => undefined } });
  try {
    const res = await dispatcher.request({ origin: base, path, method: 'GET', headers: { authorization: `Bearer ${context}`, [FINGERPRINT_HEADER]: fingerprint } });
    return { status: res.statusCode, body: await res.body.text() };
  } finally {
    await dispatcher.close();
  }
}

const lastReason = (target: string) => String(decisionsAt(p, target).at(-1)!.reason);

/** A context the edge minted for card-service, for GET /cards/recorded, captured where it arrived. */
async function capturedContext(): Promise<string> {
  const answer = await p.call('/cards/recorded', await alice());
  assert.is(answer.status, 200);
  return String(p.recorded.at(-1)!.headers.authorization).slice(7);
}

test('card-service passes the user on to the ledger: re-issued for the ledger, act = card-service, then the edge', async () => {
  const answer = await p.call('/cards/42', await alice());
  assert.is(answer.status, 200, answer.body);
  const { ledger } = JSON.parse(answer.body);
  assert.is(ledger.status, 200);
  const claims = decodeJwt(ledger.body.authorization.slice(7));
  assert.is(claims.iss, CARD);
  assert.is(claims.aud, LEDGER);
  assert.is(claims.sub, 'alice');
  assert.equal(claims.act, { sub: CARD, act: { sub: EDGE } });
  assert.is(claims.htu, '/balances/42');
  // The ledger's policy requires that chain; its decision names the rule that checked it.
  const decision = decisionsAt(p, LEDGER).at(-1)!;
  assert.is(decision.decision, 'allow');
  assert.is(decision.rule, 'balance-for-a-user-via-card-service');
  assert.is(decision.caller, CARD);
});

test('a context the application did not receive is not re-issued: the ledger refuses it', async () => {
  // card-service's application sends the edge's context for card-service (captured) as if received.
  const context = await capturedContext();
  const answer = await asWorkload(p.agents.card, p.ledger.inbound!.url, LEDGER, '/balances/42', context);
  assert.is(answer.status, 401);
  assert.match(lastReason(LEDGER), /identity context/);
});

test('a minted context lifted onto another request is refused; used twice, it is a replay', async () => {
  const context = await capturedContext();
  // Even with the edge's own key for the fingerprint: the context names GET /cards/recorded only.
  assert.is((await asWorkload(p.agents.edge, p.card.inbound!.url, CARD, '/cards/42', context)).status, 401);
  assert.is(lastReason(CARD), 'identity context wrong_request');
  assert.is((await asWorkload(p.agents.edge, p.card.inbound!.url, CARD, '/cards/recorded', context)).status, 200);
  assert.is((await asWorkload(p.agents.edge, p.card.inbound!.url, CARD, '/cards/recorded', context)).status, 401);
  assert.is(lastReason(CARD), 'identity context replayed');
});

test('a minted context lifted onto another audience is refused', async () => {
  const context = await capturedContext();
  // The edge itself, sending card-service's context to the ledger (which does not trust the edge anyway).
  assert.is((await asWorkload(p.agents.edge, p.ledger.inbound!.url, LEDGER, '/balances/42', context)).status, 401);
  assert.match(lastReason(LEDGER), /identity context (bad_aud|untrusted_issuer)/);
  // card-service, which the ledger trusts, presenting a context it issued for another service.
  const elsewhere = await mintContext({ svid: p.agents.card.svid(), target: EDGE, method: 'GET', path: '/balances/42', user: { sub: 'alice', scope: 'list_cards' }, previous: { sub: EDGE } });
  assert.is((await asWorkload(p.agents.card, p.ledger.inbound!.url, LEDGER, '/balances/42', elsewhere)).status, 401);
  assert.is(lastReason(LEDGER), 'identity context bad_aud');
});

test('a workload cannot issue a context in another workload\'s name', async () => {
  // The edge (not trusted by the ledger) signs a context claiming card-service (trusted) issued it.
  const svid = p.agents.edge.svid();
  const impersonating = await mintContext({ svid: { ...svid, spiffeId: CARD }, target: LEDGER, method: 'GET', path: '/balances/42', user: { sub: 'alice', scope: 'list_cards' }, previous: { sub: EDGE } });
  assert.is((await asWorkload(p.agents.edge, p.ledger.inbound!.url, LEDGER, '/balances/42', impersonating)).status, 401);
  assert.is(lastReason(LEDGER), 'identity context issuer_not_caller');
});

test('a context from a workload the sidecar does not trust as an issuer is refused', async () => {
  // The ledger trusts card-service's contexts only, not the edge's, even for the right audience.
  const answer = await p.call('/cards/42', await alice());
  assert.is(answer.status, 200);
  const context = JSON.parse(answer.body).ledger.body.authorization.slice(7);
  // card-service's context for the ledger, presented by the edge (a valid, live SVID): not its own.
  assert.is((await asWorkload(p.agents.edge, p.ledger.inbound!.url, LEDGER, '/balances/42', context)).status, 401);
  assert.is(lastReason(LEDGER), 'identity context bad_signature');
  // The edge's own, well-formed context for the ledger: the ledger trusts card-service only.
  const own = await mintContext({ svid: p.agents.edge.svid(), target: LEDGER, method: 'GET', path: '/balances/42', user: { sub: 'alice', scope: 'list_cards' } });
  assert.is((await asWorkload(p.agents.edge, p.ledger.inbound!.url, LEDGER, '/balances/42', own)).status, 401);
  assert.is(lastReason(LEDGER), 'identity context untrusted_issuer');
});

test('a context signed by a revoked SVID is refused', async () => {
  const context = await capturedContext();
  const serial = p.agents.edge.health().serial;
  p.ca.ca.revoke(serial);
  await eventually(async () => (await asWorkload(p.agents.edge, p.card.inbound!.url, CARD, '/cards/recorded', context)).status === 401 && /revoked/.test(lastReason(CARD)));
  // And through the edge: its minted contexts (and connections) are refused from now on.
  assert.is((await p.call('/cards', await alice())).status, 401);
});

test.run();
