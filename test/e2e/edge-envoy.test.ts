/** `palisade agent … --edge-envoy`: a real agent process answers Envoy's ext_authz on its 0600 socket, and nowhere else. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { credentials, type Client, type requestCallback } from '@grpc/grpc-js';
import { decodeJwt } from 'jose';
import { startCaServer, type CaServer } from '../../ca/server.ts';
import { grpcService } from '../../envoy/protos.ts';
import { AUTHORIZATION_SERVICE, EXT_AUTHZ_PROTO } from '../../agent/edge/ext-authz.ts';
import { startLocalProvider, type LocalProvider } from '../../testing/identity-provider.ts';
import { initCa, palisade, removeDir, type Proc } from '../support/identity.ts';

const EDGE = 'spiffe://bank.example/ns/web/sa/edge';
const CARD = 'spiffe://bank.example/ns/payments/sa/card-service';

interface Answer { status: { code: number }; ok_response?: { headers: { header: { key: string; value: string } }[] }; denied_response?: { status: { code: string } } }
type AuthorizationClient = Client & { Check(req: object, cb: requestCallback<Answer>): void };

let dir: string;
let ca: CaServer;
let provider: LocalProvider;
let agent: Proc;
const socket = () => path.join(dir, 'agent.sock');

test.before(async () => {
  const caDir = await initCa();
  dir = path.dirname(caDir);
  ca = await startCaServer({ dir: caDir, port: 0 });
  provider = await startLocalProvider({ audience: 'bank-apis', scopes: ['list_cards'], users: { alice: { scopes: ['list_cards'] } } });
  await writeFile(path.join(dir, 'edge-routes.json'), JSON.stringify({ '/cards': { url: 'https://127.0.0.1:1', spiffeId: CARD } }));
  agent = palisade([
    'agent', '--ca-url', ca.url, '--bundle', path.join(caDir, 'bundle.pem'), '--token', (await ca.ca.createToken(EDGE, 60_000)).token,
    '--sds', `unix:${socket()}`, '--edge-envoy', '--edge-routes', path.join(dir, 'edge-routes.json'),
    '--oidc-issuer', provider.issuer, '--oidc-audience', 'bank-apis',
  ]);
});

test.after(async () => {
  await agent.stop();
  await provider.close();
  await ca.close();
  removeDir(dir);
});

test('the agent answers Check on its owner-only socket: a provider token gets a context, a forged one 401', async () => {
  await agent.waitFor(/edge answering Envoy's ext_authz/);
  await agent.waitFor(/agent ready/);
  assert.is(statSync(socket()).mode & 0o777, 0o600);
  const Authorization = grpcService(EXT_AUTHZ_PROTO, AUTHORIZATION_SERVICE);
  const client = new Authorization(`unix:${socket()}`, credentials.createInsecure()) as unknown as AuthorizationClient;
  const check = (token: string) => new Promise<Answer>((resolve, reject) => client.Check(
    { attributes: { request: { http: { method: 'GET', path: '/cards', host: 'api.bank.example', headers: { authorization: `Bearer ${token}` } } } } },
    (err, res) => (err ? reject(err) : resolve(res!)),
  ));
  try {
    const ok = await check(await provider.login('alice', ['list_cards']));
    assert.is(ok.status.code, 0);
    const context = ok.ok_response!.headers.find((h) => h.header.key === 'authorization')!.header.value.slice(7);
    assert.equal([decodeJwt(context).iss, decodeJwt(context).aud, decodeJwt(context).sub], [EDGE, CARD, 'alice']);
    const refused = await check(await provider.forge({ sub: 'alice', aud: 'another-api' }));
    assert.is(refused.denied_response!.status.code, 'Unauthorized');
  } finally {
    client.close();
  }
});

test.run();
