/**
 * Fail closed: whenever the agent cannot sign (stopped, error status, timeout, malformed
 * answer), the egress filter answers 503 itself and the request never leaves.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { loadFilter, type Outcome } from '../../../host/index.ts';
import { egressConfiguration, egressFilter, egressWasm, fakeAgent, httpCluster, startSigningAgent, text } from './harness.ts';

function assertUnavailable(o: Outcome, reason: string, requestId = 'req-9'): void {
  assert.equal([o.kind, o.status, o.upstreamRequest], ['reply', 503, null], text(o.body));
  assert.equal(JSON.parse(text(o.body)), { error: 'fingerprint_unavailable', request_id: requestId });
  assert.equal(o.headers.find(([k]) => k === 'content-type'), ['content-type', 'application/json']);
  assert.ok(o.logs.some((l) => l.message === `palisade.egress fingerprint_unavailable reason=${reason}`), JSON.stringify(o.logs));
}

const REQUEST = { method: 'POST', path: '/cards', authority: 'card', headers: { 'x-request-id': 'req-9' }, body: 'secret payload' };

/** Runs REQUEST through a filter whose signer cluster is `handler`'s HTTP server. */
async function through(handler: (req: IncomingMessage, res: ServerResponse) => void, extra: object = {}): Promise<{ outcome: Outcome; ms: number; failed: number }> {
  const agent = await fakeAgent(handler);
  const http = httpCluster(agent.origin);
  const filter = await egressFilter(http.cluster, egressConfiguration('127.0.0.1:15090', undefined, extra));
  try {
    const started = Date.now();
    const outcome = await filter.handleRequest(REQUEST);
    return { outcome, ms: Date.now() - started, failed: filter.metrics()['palisade_egress_fingerprints.result=failed'].value };
  } finally {
    await filter.close();
    await agent.close();
    await http.close();
  }
}

test('the real agent stops: 503 instead of an unsigned request', async () => {
  const world = await startSigningAgent();
  const http = httpCluster(`http://${world.authority}`);
  const filter = await egressFilter(http.cluster, egressConfiguration(world.authority));
  try {
    assert.is((await filter.handleRequest(REQUEST)).kind, 'forward');
    await world.admin.close();
    assertUnavailable(await filter.handleRequest(REQUEST), 'agent_unreachable');
    assert.is(filter.metrics()['palisade_egress_fingerprints.result=failed'].value, 1);
  } finally {
    await filter.close();
    await http.close();
    await world.close();
  }
});

test('the agent answers 500: 503', async () => {
  const { outcome, failed } = await through((_req, res) => res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":{"code":"internal_error","message":"x"}}'));
  assertUnavailable(outcome, 'agent_status');
  assert.is(failed, 1);
});

const answers: [string, string][] = [
  ['garbage', 'not json at all'],
  ['empty', ''],
  ['not a JWS', '{"token":"hello","exp":1}'],
  ['a JWS with a bad character', '{"token":"a.b+.c","exp":1}'],
  ['no exp', '{"token":"a.b.c"}'],
  ['an unknown member', '{"token":"a.b.c","exp":1,"kid":"x"}'],
  ['a duplicated token', '{"token":"a.b.c","token":"d.e.f","exp":1}'],
  ['an escaped token', '{"token":"a.b\\u002ec","exp":1}'],
  ['trailing bytes', '{"token":"a.b.c","exp":1} x'],
  ['an oversized token', `{"token":"a.b.${'c'.repeat(5000)}","exp":1}`],
];
for (const [what, body] of answers) {
  test(`the agent answers 200 with ${what}: 503`, async () => {
    const { outcome } = await through((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
    assertUnavailable(outcome, 'agent_answer');
  });
}

test('the agent does not answer within signer_timeout_ms: 503 at the timeout', async () => {
  const { outcome, ms } = await through(() => {}, { signer_timeout_ms: 150 });
  assertUnavailable(outcome, 'agent_status'); // Envoy's async client answers a timeout with 504
  assert.ok(ms >= 140 && ms < 2000, `${ms} ms`);
});

test('no signer cluster in Envoy (http_call refused): 503 at once', async () => {
  const filter = await loadFilter(await egressWasm(), { configuration: egressConfiguration('127.0.0.1:15090'), clusters: {} });
  try {
    assertUnavailable(await filter.handleRequest(REQUEST), 'call_refused');
  } finally {
    await filter.close();
  }
});

test('a well-formed answer from the same server passes (the checks above are not vacuous)', async () => {
  const { outcome } = await through((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"exp":1,"token":"a.b.c"}'));
  assert.is(outcome.kind, 'forward');
  assert.equal(outcome.upstreamRequest!.headers.filter(([k]) => k === 'x-palisade-fingerprint'), [['x-palisade-fingerprint', 'a.b.c']]);
  assert.is(text(outcome.upstreamRequest!.body), 'secret payload');
});

test.run();
