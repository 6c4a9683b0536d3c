/**
 * The edge in Envoy mode: the agent's ext_authz service (agent/edge/ext-authz.ts) on its Unix
 * socket, called exactly as Envoy's ext_authz filter calls it (gRPC
 * envoy.service.auth.v3.Authorization/Check with the CheckRequest Envoy builds), against the
 * real OpenID provider and real agents. A good token gets a context the card service's real
 * inbound sidecar accepts; every token attack is DENIED with the Node edge's own 401 answer.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type Client, type requestCallback } from '@grpc/grpc-js';
import { decodeJwt, SignJWT, generateKeyPair } from 'jose';
import { request } from 'undici';
import { grpcService } from '../../../envoy/protos.ts';
import { createXdsServer, type XdsServer } from '../../../agent/xds/server.ts';
import { prepareEdge } from '../../../agent/edge/index.ts';
import { AUTHORIZATION_SERVICE, EXT_AUTHZ_PROTO } from '../../../agent/edge/ext-authz.ts';
import { startOutbound } from '../../../agent/sidecar/outbound.ts';
import type { Listener } from '../../../agent/sidecar/inbound.ts';
import { startPerimeter, decisionsAt, CARD, EDGE, AUDIENCE, type Perimeter } from './perimeter.ts';

const test = suite('edge in Envoy mode: ext_authz on the agent socket');
let p: Perimeter;
let dir: string;
let xds: XdsServer;
type AuthorizationClient = Client & { Check(req: object, cb: requestCallback<CheckResponse>): void };
let client: AuthorizationClient;
/** Stands in for Envoy's egress wasm filter and mTLS cluster: signs a fingerprint as the edge and connects with its SVID. */
let upstream: Listener;

interface HeaderOption { header: { key: string; value: string } }
interface CheckResponse {
  status: { code: number };
  ok_response?: { headers: HeaderOption[] };
  denied_response?: { status: { code: string | number }; headers: HeaderOption[]; body: string };
}

test.before(async () => {
  p = await startPerimeter();
  dir = await mkdtemp(join(tmpdir(), 'palisade-ext-authz-'));
  const routesFile = join(dir, 'edge-routes.json');
  await writeFile(routesFile, JSON.stringify({ '/cards': { url: p.card.inbound!.url, spiffeId: CARD } }));
  const edge = await prepareEdge({ routesFile, issuer: p.provider.issuer, audience: AUDIENCE, typ: 'at+jwt' });
  const socket = join(dir, 'agent.sock');
  xds = createXdsServer(`unix:${socket}`, [await edge.extAuthz(p.agents.edge, p.log.logger)]);
  await xds.start();
  const Authorization = grpcService(EXT_AUTHZ_PROTO, AUTHORIZATION_SERVICE);
  client = new Authorization(`unix:${socket}`, credentials.createInsecure()) as unknown as AuthorizationClient;
  upstream = await startOutbound({ routes: { 'route-0': { url: p.card.inbound!.url, spiffeId: CARD } }, identity: p.agents.edge, logger: p.log.logger });
});

test.after(async () => {
  client?.close();
  await upstream?.close();
  await xds?.close();
  await rm(dir, { recursive: true, force: true });
  await p?.close();
});

/** A CheckRequest as Envoy's ext_authz filter builds it (allowed_headers: authorization). */
function check(path: string, authorization?: string, method = 'GET'): Promise<CheckResponse> {
  const headers: Record<string, string> = { ':authority': 'api.bank.example', ':method': method, ':path': path };
  if (authorization !== undefined) headers.authorization = authorization;
  const req = {
    attributes: {
      source: { address: { socket_address: { address: '203.0.113.7', port_value: 51234 } } },
      destination: { address: { socket_address: { address: '127.0.0.1', port_value: 8443 } } },
      request: { time: { seconds: Math.floor(Date.now() / 1000) }, http: { id: '1', method, path, host: 'api.bank.example', scheme: 'https', protocol: 'HTTP/1.1', headers } },
    },
  };
  return new Promise((resolve, reject) => client.Check(req, (err, res) => (err ? reject(err) : resolve(res!))));
}

const headerOf = (headers: HeaderOption[], key: string) => headers.find((h) => h.header.key === key)?.header.value;

/** DENIED exactly as the Node edge answers: status, RFC 6750 challenge, JSON body. */
function assertDenied(res: CheckResponse, status: number, code: string | null) {
  assert.is.not(res.status.code, 0, 'not OK');
  assert.is(res.ok_response, undefined);
  const denied = res.denied_response!;
  assert.is(denied.status.code, status === 401 ? 'Unauthorized' : 'BadRequest'); // the loader reads enums by name
  const challenge = headerOf(denied.headers, 'www-authenticate')!;
  assert.match(challenge, /^Bearer realm="palisade"/);
  if (code) assert.ok(challenge.includes(`error="${code}"`), challenge);
  else assert.not.match(challenge, /error=/);
  assert.is(JSON.parse(denied.body).error.code, code ?? 'unauthenticated');
}

test('a provider token: OK with a context for the route\'s service that its inbound sidecar accepts', async () => {
  const token = await p.provider.login('alice', ['list_cards', 'profile']);
  const res = await check('/cards?page=1', `Bearer ${token}`);
  assert.is(res.status.code, 0);
  const headers = res.ok_response!.headers;
  const authorization = headerOf(headers, 'authorization')!;
  const claims = decodeJwt(authorization.slice(7));
  assert.is(claims.iss, EDGE);
  assert.is(claims.aud, CARD);
  assert.is(claims.sub, 'alice');
  assert.is(claims.htm, 'GET');
  assert.is(claims.htu, '/cards');
  assert.type(claims.jti, 'string');
  const authority = headerOf(headers, ':authority')!;
  assert.is(authority, 'route-0');
  // What Envoy then does: its egress filter signs a fingerprint as the edge, mTLS to the service.
  const answer = await request(`${upstream.url}/cards?page=1`, { headers: { host: authority, authorization } });
  assert.is(answer.statusCode, 200, await answer.body.text());
  const decision = decisionsAt(p, CARD).at(-1)!;
  assert.is(decision.caller, EDGE);
  assert.is(decision.rule, 'list-cards');
});

test('a context minted for one request is refused on another path', async () => {
  const res = await check('/cards', `Bearer ${await p.provider.login('alice', ['list_cards', 'profile'])}`);
  const authorization = headerOf(res.ok_response!.headers, 'authorization')!;
  const answer = await request(`${upstream.url}/cards/42`, { headers: { host: 'route-0', authorization } });
  await answer.body.dump();
  assert.is(answer.statusCode, 401);
});

test('no token and another scheme: 401 without an error code; repeated header: 400', async () => {
  assertDenied(await check('/cards'), 401, null);
  assertDenied(await check('/cards', 'Basic YWxpY2U6c2VjcmV0'), 401, null);
  const token = await p.provider.login('alice', ['list_cards', 'profile']);
  assertDenied(await check('/cards', `Bearer ${token},Bearer ${token}`), 400, 'invalid_request');
});

test('alg none, wrong audience, expired and a foreign key: DENIED 401 invalid_token', async () => {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: 'alice', scope: 'list_cards', iss: p.provider.issuer, aud: AUDIENCE, iat: now, exp: now + 300 };
  assertDenied(await check('/cards', `Bearer ${b64({ alg: 'none', typ: 'at+jwt' })}.${b64(claims)}.`), 401, 'invalid_token');
  assertDenied(await check('/cards', `Bearer ${await p.provider.forge({ sub: 'alice', scope: 'list_cards', aud: 'another-api' })}`), 401, 'invalid_token');
  assertDenied(await check('/cards', `Bearer ${await p.provider.forge({ sub: 'alice', scope: 'list_cards', iat: now - 600, exp: now - 120 })}`), 401, 'invalid_token');
  const foreign = await generateKeyPair('ES256');
  const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'attacker' }).sign(foreign.privateKey);
  assertDenied(await check('/cards', `Bearer ${forged}`), 401, 'invalid_token');
  // The same forge with nothing wrong passes: the refusals are the checks.
  assert.is((await check('/cards', `Bearer ${await p.provider.forge({ sub: 'alice', scope: 'list_cards' })}`)).status.code, 0);
});

test('a minted context presented as a user token, dot segments and unrouted paths are denied', async () => {
  const res = await check('/cards', `Bearer ${await p.provider.login('alice', ['list_cards', 'profile'])}`);
  assertDenied(await check('/cards', headerOf(res.ok_response!.headers, 'authorization')), 401, 'invalid_token');
  const token = `Bearer ${await p.provider.login('alice', ['list_cards', 'profile'])}`;
  assertDenied(await check('/cards/%2e%2e/admin', token), 400, 'invalid_request');
  const unrouted = (await check('/admin', token)).denied_response!;
  assert.is(unrouted.status.code, 'NotFound');
  assert.is(JSON.parse(unrouted.body).error.code, 'no_route');
});

test.run();
