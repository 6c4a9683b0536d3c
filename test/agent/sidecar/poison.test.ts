/**
 * What a request carries cannot poison the inbound sidecar: claims nested thousands of
 * levels deep (in a user token from the issuer, or in a caller's own fingerprint) get a 401
 * for that request and the next requests decide normally on the same filter; a secret in a
 * query value lands in no log line. Real CA, SVIDs, TLS sockets and compiled filter.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sign } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Agent } from 'undici';
import { startInbound, type Listener } from '../../../agent/sidecar/inbound.ts';
import { FilterSlot } from '../../../agent/sidecar/filter-slot.ts';
import { FINGERPRINT_HEADER, FINGERPRINT_TYP } from '../../../spiffe/fingerprint.ts';
import { pathForLog } from '../../../agent/sidecar/decision-log.ts';
import { createIssuer, verifierFor } from './issuer.ts';
import { identities, startEcho, captureLog, mtlsAgent, call, CARD, type Echo } from './harness.ts';
import { compiled, loadStrict } from './policies.ts';

const ids = await identities();
const issuer = await createIssuer();
const users = await verifierFor(issuer);
const log = captureLog();
const echo: Echo = await startEcho();
const filters = await FilterSlot.create(await compiled('card'), loadStrict);
const sidecar: Listener = await startInbound({ app: echo.url, identity: ids.card, filters, identityContext: users.verify, logger: log.logger });
const agent: Agent = mtlsAgent(ids.ca.certPem, ids.frontend.svid());

test.after(async () => {
  await agent.close();
  await sidecar.close();
  await echo.close();
  await users.cleanup();
});

const front = () => ids.frontend.svid();
const decisions = () => log.lines.filter((l) => l.msg === 'decision');
/** The decision lines after the first `from`, once there are `count` (each is written when its response closes, which may come just after the client has it). */
async function decisionsAfter(from: number, count = 1): Promise<Record<string, unknown>[]> {
  for (let i = 0; i < 400 && decisions().length < from + count; i++) await sleep(5);
  return decisions().slice(from);
}

/** JSON text of `levels` nested lists: two bytes a level, the deepest a token's size allows (JSON.stringify overflows first). */
const nestedList = (levels: number) => `${'['.repeat(levels)}"list_cards"${']'.repeat(levels)}`;

/** Requests that must keep being decided normally by the same filter. */
async function stillDeciding(): Promise<void> {
  const token = await issuer.token({ sub: 'alice', scope: 'list_cards' });
  const allowed = await call(sidecar.url, agent, front(), { path: '/cards', headers: { authorization: `Bearer ${token}` } });
  assert.is(allowed.status, 200, allowed.text);
  const other = await issuer.token({ sub: 'bob', scope: 'other' });
  assert.is((await call(sidecar.url, agent, front(), { path: '/cards', headers: { authorization: `Bearer ${other}` } })).status, 403);
  assert.is((await call(sidecar.url, agent, front(), { path: '/cards/42' })).status, 200);
}

test('a user token with claims nested thousands of levels deep: 401 for that request, the filter keeps deciding', async () => {
  const now = Math.floor(Date.now() / 1000);
  const claims = JSON.stringify({ iss: issuer.iss, aud: issuer.aud, iat: now, exp: now + 300, sub: 'mallory', scope: 'list_cards' });
  const token = await issuer.signJson(`${claims.slice(0, -1)},"deep":${nestedList(2_800)}}`);
  assert.ok(token.length <= 8192, `token of ${token.length} bytes fits the identity-context limit`);
  const from = decisions().length;
  const res = await call(sidecar.url, agent, front(), { path: '/cards', headers: { authorization: `Bearer ${token}` } });
  assert.is(res.status, 401);
  assert.is((await decisionsAfter(from))[0].reason, 'metadata_unreadable');
  await stillDeciding();
  assert.is(filters.acquire().filter.failed, null);
});

test("a caller's own fingerprint carrying a deeply nested extra claim: 401 for that request, the filter keeps deciding", async () => {
  const svid = front();
  const iat = Math.floor(Date.now() / 1000);
  const claims = JSON.stringify({
    iss: svid.spiffeId, sub: svid.spiffeId, aud: CARD, htm: 'GET', htu: '/cards/42', iat, exp: iat + 30, jti: `poison-${iat}-abcdefghijklmnop`,
  });
  const b64 = (text: string) => Buffer.from(text).toString('base64url');
  const input = `${b64(JSON.stringify({ alg: 'ES256', typ: FINGERPRINT_TYP }))}.${b64(`${claims.slice(0, -1)},"deep":${nestedList(1_250)}}`)}`;
  const fingerprint = `${input}.${sign('sha256', Buffer.from(input), { key: svid.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
  assert.ok(fingerprint.length <= 4096, `fingerprint of ${fingerprint.length} bytes fits the limit`);
  const from = decisions().length;
  const res = await call(sidecar.url, agent, svid, { path: '/cards/42', fingerprint: false, headers: { [FINGERPRINT_HEADER]: fingerprint } });
  assert.is(res.status, 401);
  assert.is((await decisionsAfter(from))[0].reason, 'metadata_unreadable');
  await stillDeciding();
});

test('a secret in a query value lands in no log line, whatever the decision', async () => {
  const secret = 'SECRET-3b1f9c0d7e';
  const token = await issuer.token({ sub: 'alice', scope: 'list_cards' });
  const from = log.lines.length;
  const firstDecision = decisions().length;
  const paths = [
    { path: `/cards/42?access_token=${secret}&page=2`, status: 200 },
    { path: `/cards?access_token=${secret}`, status: 200, headers: { authorization: `Bearer ${token}` } },
    { path: `/admin?page=1&${secret}&token=${encodeURIComponent(secret)}`, status: 403 },
  ];
  for (const p of paths) assert.is((await call(sidecar.url, agent, front(), { path: p.path, headers: p.headers })).status, p.status, p.path);
  // refused by the sidecar before the filter: a bad fingerprint
  assert.is((await call(sidecar.url, agent, front(), { path: `/cards/42?access_token=${secret}`, fingerprint: { path: '/elsewhere' } })).status, 401);
  const written = await decisionsAfter(firstDecision, 4);
  for (const line of log.lines.slice(from)) assert.not.ok(JSON.stringify(line).includes(secret), `secret in ${JSON.stringify(line)}`);
  assert.equal(written.map((l) => l.path), [
    '/cards/42?access_token=&page=', '/cards?access_token=', '/admin?page=&token=', '/cards/42?access_token=',
  ]);
  assert.ok(echo.seen.some((s) => s.url === `/cards/42?access_token=${secret}&page=2`), 'the application still gets the query');
});

test('pathForLog: names and "=" stay, values and bare parameters go', () => {
  assert.is(pathForLog('/cards'), '/cards');
  assert.is(pathForLog('/cards?'), '/cards?');
  assert.is(pathForLog('/a?x=1&y=&z'), '/a?x=&y=');
  assert.is(pathForLog('/a?=v&k=a=b&k2=v#frag'), '/a?=&k=&k2=');
  assert.is(pathForLog('/a?x=1;token=s'), '/a?x=');
});

test.run();
