/** `palisade agent … --edge`: the edge in a real agent process joined to a real CA, in front of a real OpenID provider. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createPrivateKey } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Agent, request } from 'undici';
import { decodeJwt } from 'jose';
import { startCaServer, type CaServer } from '../../ca/server.ts';
import { SvidHolder } from '../../agent/sidecar/svid.ts';
import { tlsMaterial } from '../../agent/sidecar/tls.ts';
import { startLocalProvider, type LocalProvider } from '../../testing/identity-provider.ts';
import { initCa, palisade, removeDir, type Proc } from '../support/identity.ts';

const EDGE = 'spiffe://bank.example/ns/web/sa/edge';
const CARD = 'spiffe://bank.example/ns/payments/sa/card-service';

let dir: string;
let ca: CaServer;
let provider: LocalProvider;
let service: Server;
let agent: Proc;
const received: Record<string, string | string[] | undefined>[] = [];

test.before(async () => {
  const caDir = await initCa();
  dir = path.dirname(caDir);
  ca = await startCaServer({ dir: caDir, port: 0 });
  const bundle = await readFile(path.join(caDir, 'bundle.pem'), 'utf8');
  provider = await startLocalProvider({ audience: 'bank-apis', scopes: ['list_cards'], users: { alice: { scopes: ['list_cards'], claims: { department: 'cards' } } } });
  // The service behind the edge, as card-service: it keeps what it receives.
  const issued = await ca.ca.mint(CARD, 600_000);
  const svid = { spiffeId: CARD, chainPem: issued.svid_pem, privateKey: createPrivateKey(issued.key_pem), notAfter: new Date(issued.not_after) };
  service = createServer({ ...tlsMaterial(new SvidHolder(svid, bundle)), requestCert: true }, (req, res) => {
    received.push(req.headers);
    res.end('{}');
  });
  await new Promise<void>((r) => service.listen(0, '127.0.0.1', r));
  await writeFile(path.join(dir, 'edge-routes.json'), JSON.stringify({ '/cards': { url: `https://127.0.0.1:${(service.address() as AddressInfo).port}`, spiffeId: CARD } }));
  await writeFile(path.join(dir, 'edge.secret'), `${provider.edgeClient.secret}\n`, { mode: 0o600 });
  agent = palisade([
    'agent', '--ca-url', ca.url, '--bundle', path.join(caDir, 'bundle.pem'), '--token', (await ca.ca.createToken(EDGE, 60_000)).token,
    '--edge', '127.0.0.1:0', '--edge-routes', path.join(dir, 'edge-routes.json'),
    '--oidc-issuer', provider.issuer, '--oidc-audience', 'bank-apis', '--oidc-token-type', 'at+jwt',
    '--oidc-client-id', provider.edgeClient.id, '--oidc-client-secret-file', path.join(dir, 'edge.secret'), '--edge-claim', 'department',
  ]);
});

test.after(async () => {
  await agent.stop();
  await new Promise((r) => service.close(r));
  await provider.close();
  await ca.close();
  removeDir(dir);
});

test('the agent runs the edge: user and opaque tokens in, minted contexts out, bad tokens refused with a challenge', async () => {
  const [, url] = await agent.waitFor(/"edge":"(https:\/\/[^"]+)"/);
  const client = new Agent({ connect: { ca: await readFile(path.join(dir, 'ca', 'bundle.pem'), 'utf8'), checkServerIdentity: () => undefined } });
  const get = async (token: string) => {
    const res = await request(`${url}/cards`, { headers: { authorization: `Bearer ${token}` }, dispatcher: client });
    await res.body.text();
    return res;
  };
  try {
    assert.is((await get(await provider.login('alice', ['list_cards']))).statusCode, 200);
    const claims = decodeJwt(String(received.at(-1)!.authorization).slice(7));
    assert.equal([claims.iss, claims.aud, claims.sub, claims.department], [EDGE, CARD, 'alice', 'cards']);
    assert.is((await get(await provider.clientToken(['list_cards'], 'opaque'))).statusCode, 200);
    const refused = await get(await provider.forge({ sub: 'alice', aud: 'another-api' }));
    assert.is(refused.statusCode, 401);
    assert.match(String(refused.headers['www-authenticate']), /^Bearer realm="palisade", error="invalid_token"/);
    assert.is(received.length, 2);
  } finally {
    await client.close();
  }
});

test.run();
