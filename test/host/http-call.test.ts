import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadFilter, type HttpCallRequest, type Filter, type LoadOptions } from '../../host/index.ts';
import { fixtureFilter } from './fixtures.ts';

const calls: HttpCallRequest[] = [];
const clusters: LoadOptions['clusters'] = {
  signer: async (req) => {
    calls.push(req);
    await new Promise((r) => setTimeout(r, 5));
    return { status: 200, headers: { 'X-Echo': 'echoed' }, body: 'sig-123' };
  },
  broken: async () => ({ status: 500, body: 'no key' }),
  down: async () => {
    throw new Error('connection refused');
  },
};

let f: Filter;
test.before(async () => {
  f = await loadFilter(await fixtureFilter(), { clusters });
});
test.after(() => f.close());

const call = (cluster: string) =>
  f.handleRequest({ method: 'GET', path: '/pay?x=1', authority: 'svc', headers: { 'x-test': 'call', 'x-cluster': cluster } });

test('http_call pauses the stream; the answer reaches the root context and continue_stream resumes it', async () => {
  const o = await call('signer');
  assert.is(o.kind, 'forward');
  assert.equal(o.upstreamRequest!.headers.filter(([k]) => k === 'x-signed'), [['x-signed', 'sig-123']]);
  assert.ok(o.logs.some((l) => l.message === 'call root=1 status=200 headers=2 body=sig-123 echo=echoed'), JSON.stringify(o.logs));
  const sent = calls.at(-1)!;
  assert.is(sent.cluster, 'signer');
  assert.equal(sent.headers, [[':method', 'POST'], [':path', '/sign'], [':authority', 'agent'], ['x-caller', '/pay?x=1'], ['content-length', '7']]);
  assert.is(new TextDecoder().decode(sent.body), 'payload');
  assert.is(sent.timeoutMs, 1000);
});

test('a failing upstream: the filter answers with its local reply', async () => {
  const o = await call('broken');
  assert.equal([o.kind, o.status, o.details], ['reply', 503, 'signer_unavailable']);
  const down = await call('down');
  assert.equal([down.kind, down.status], ['reply', 503]);
});

test('an unknown cluster is BAD_ARGUMENT, as in Envoy', async () => {
  const o = await call('nowhere');
  assert.ok(o.logs.some((l) => l.message === 'http_call=2'));
  assert.is(o.kind, 'forward');
});

test('concurrent paused streams resume independently', async () => {
  const outcomes = await Promise.all([call('signer'), call('broken'), call('signer')]);
  assert.equal(outcomes.map((o) => o.status), [200, 503, 200]);
});

test.run();
