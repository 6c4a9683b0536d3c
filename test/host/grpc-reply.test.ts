/**
 * Local replies to gRPC requests take Envoy's gRPC form: HTTP 200, trailers-only, with
 * `grpc-status` (the filter's `grpc_status`, else mapped from the HTTP status) and the body as
 * `grpc-message`. A 403 with a body is useless to a gRPC stub, and a host that answered it
 * would let a filter pass here and fail its callers behind Envoy.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import { loadFilter, type Filter, type FilterRequest } from '../../host/index.ts';
import { encodeGrpcMessage, httpToGrpcStatus } from '../../host/grpc-reply.ts';
import { withFingerprint } from '../../testing/fingerprint.ts';
import { fixtureFilter } from './fixtures.ts';
import { compiledFile } from '../support/compiled.ts';

const grpc = suite('gRPC local replies');
const open: Filter[] = [];
grpc.after(async () => {
  await Promise.all(open.map((f) => f.close()));
});
async function load(wasm: Uint8Array): Promise<Filter> {
  const f = await loadFilter(wasm);
  open.push(f);
  return f;
}

const reply = (headers: Record<string, string>): FilterRequest => ({
  method: 'POST', path: '/demo.Cards/Get', authority: 'card', headers: { 'x-test': 'reply', 'x-request-id': 'r1', ...headers },
});
const header = (pairs: [string, string][], name: string) => pairs.filter(([k]) => k === name).map(([, v]) => v);

grpc('grpc_status -1 to a gRPC request: 200, trailers-only, grpc-status mapped from 403, the body as grpc-message', async () => {
  const f = await load(await fixtureFilter());
  const o = await f.handleRequest(reply({ 'content-type': 'application/grpc+proto' }));
  assert.is(o.kind, 'reply');
  assert.is(o.status, 200);
  assert.equal(header(o.headers, 'grpc-status'), ['7']);
  assert.equal(header(o.headers, 'grpc-message'), ['nope']);
  assert.equal(header(o.headers, 'content-type'), ['application/grpc']);
  assert.equal(header(o.headers, 'x-reply'), ['yes'], 'the filter\'s own headers stay');
  assert.equal(header(o.headers, 'content-length'), []);
  assert.is(o.body.length, 0);
  assert.is(o.details, 'access_denied');
});

grpc('a known grpc_status from the filter wins; an unknown one (99) falls back to the mapping', async () => {
  const f = await load(await fixtureFilter());
  const given = await f.handleRequest(reply({ 'content-type': 'application/grpc', 'x-grpc-status': '5' }));
  assert.equal(header(given.headers, 'grpc-status'), ['5']);
  const unknown = await f.handleRequest(reply({ 'content-type': 'application/grpc', 'x-grpc-status': '99' }));
  assert.equal(header(unknown.headers, 'grpc-status'), ['7']);
});

grpc('not gRPC (no content-type, gRPC-Web, a prefix lookalike): the plain local reply, unchanged', async () => {
  const f = await load(await fixtureFilter());
  for (const type of [undefined, 'application/grpc-web', 'application/grpcx', 'text/plain']) {
    const o = await f.handleRequest(reply(type ? { 'content-type': type } : {}));
    assert.is(o.status, 403, String(type));
    assert.is(Buffer.from(o.body).toString(), 'nope');
    assert.equal(header(o.headers, 'grpc-status'), []);
  }
});

grpc('the policy filter passes -1: a denied gRPC call is PERMISSION_DENIED, one without a fingerprint UNAUTHENTICATED', async () => {
  const card = await compiledFile(fileURLToPath(new URL('../../examples/card-service/card-service.policy.json', import.meta.url)));
  const f = await load(card.wasm);
  const service = 'spiffe://bank.example/ns/payments/sa/card-service';
  const call: FilterRequest = {
    method: 'POST', path: '/demo.Cards/Get', authority: 'card', headers: { 'content-type': 'application/grpc', te: 'trailers' },
    source: { principal: 'spiffe://bank.example/ns/web/sa/frontend' },
  };
  const denied = await f.handleRequest(withFingerprint(call, service));
  assert.is(denied.status, 200);
  assert.equal(header(denied.headers, 'grpc-status'), ['7']);
  assert.match(header(denied.headers, 'grpc-message')[0], /^\{"error":"forbidden","request_id":"/);
  const unauthenticated = await f.handleRequest(call);
  assert.equal(header(unauthenticated.headers, 'grpc-status'), ['16']);
});

grpc('the mapping and the message encoding are gRPC\'s', () => {
  assert.equal([400, 401, 403, 404, 429, 502, 503, 504, 500, 418].map(httpToGrpcStatus), [13, 16, 7, 12, 14, 14, 14, 14, 2, 2]);
  assert.is(encodeGrpcMessage('a b%c\u00e9\n'), 'a b%25c%C3%A9%0A');
});

grpc.run();
