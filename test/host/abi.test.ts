import { test } from 'uvu';
import protobuf from 'protobufjs';
import * as assert from 'uvu/assert';
import { loadFilter, decodePairs, type Filter, type FilterRequest, type LoadOptions, type Outcome } from '../../host/index.ts';
import { fixtureFilter, minimalExports, tinyModule } from './fixtures.ts';

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const messages = (o: Outcome) => o.logs.map((l) => l.message);
const header = (pairs: [string, string][] | undefined, name: string) => pairs?.filter(([k]) => k === name).map(([, v]) => v);

let open: Filter[] = [];
async function filter(options: LoadOptions = {}): Promise<Filter> {
  const f = await loadFilter(await fixtureFilter(), options);
  open.push(f);
  return f;
}
test.after.each(async () => {
  await Promise.all(open.map((f) => f.close()));
  open = [];
});

const request = (op: string, extra: Partial<FilterRequest> = {}): FilterRequest => ({
  method: 'GET',
  path: '/cards/42?page=2',
  authority: 'card.internal',
  ...extra,
  headers: { 'x-test': op, ...(extra.headers as Record<string, string>) },
});

test('request headers: pseudo-headers, lowercase keys, add/replace/remove, byte size, map scope', async () => {
  const f = await filter();
  const o = await f.handleRequest(request('headers', { headers: { 'X-A': 'A', 'x-replaced': ['old1', 'old2'], 'x-del': 'gone', 'x-request-id': 'rid' } }));
  const [first, second] = messages(o);
  assert.is(first, 'n=10 eos=1 method=GET path=/cards/42?page=2 authority=card.internal scheme=https xa=A missing=<1>');
  // the response map does not exist during the request phase: BAD_ARGUMENT (2), like Envoy
  assert.match(second, 'response_map=<2>');
  const up = o.upstreamRequest!.headers;
  assert.equal(header(up, 'x-added'), ['1', '2']);
  assert.equal(header(up, 'x-replaced'), ['new']);
  assert.equal(header(up, 'x-del'), []);
  const bytes = up.reduce((n, [k, v]) => n + k.length + v.length, 0);
  assert.match(second, `size=${bytes} `);
  // once the filter continued, request headers are gone (BAD_ARGUMENT) except in on_log, where they are readable
  assert.ok(messages(o).includes('response status=200 request=<2>'));
  assert.ok(messages(o).includes('on_log path=/cards/42?page=2'));
  assert.equal(header(o.headers, 'x-resp'), ['1']);
  assert.is(o.kind, 'forward');
  assert.is(o.status, 200);
  assert.is(o.details, 'via_upstream');
});

test('x-request-id is generated when absent and kept when given', async () => {
  const f = await filter();
  const generated = await f.handleRequest(request('none'));
  assert.match(header(generated.upstreamRequest!.headers, 'x-request-id')![0], /^[0-9a-f-]{36}$/);
  const kept = await f.handleRequest(request('none', { headers: { 'x-request-id': 'abc' } }));
  assert.equal(header(kept.upstreamRequest!.headers, 'x-request-id'), ['abc']);
});

test('header pairs round trip: serialized pairs in, set_header_map_pairs replaces the map', async () => {
  const f = await filter();
  // Long values are written natively and short ones by hand: both, ASCII or not, byte for byte.
  const long = 'a'.repeat(200);
  const longUtf8 = `${'b'.repeat(60)}ü😀`;
  const o = await f.handleRequest(request('pairs', { headers: { 'x-request-id': 'r1', 'x-b': 'ü', 'x-long': long, 'x-long-utf8': longUtf8 } }));
  const hex = messages(o)[0].replace('pairs=', '');
  const pairs = decodePairs(Buffer.from(hex, 'hex'));
  assert.equal(pairs, [
    [':authority', 'card.internal'], [':path', '/cards/42?page=2'], [':method', 'GET'], [':scheme', 'https'],
    ['x-test', 'pairs'], ['x-request-id', 'r1'], ['x-b', 'ü'], ['x-long', long], ['x-long-utf8', longUtf8],
  ]);
  assert.is(messages(o)[1], 'set=0');
  assert.equal(o.upstreamRequest!.headers, [[':method', 'PUT'], ['x-only', 'yes'], ['x-upper', 'v']]);
});

test('pseudo-headers cannot be smuggled through request headers', async () => {
  const f = await filter();
  try {
    await f.handleRequest({ method: 'GET', path: '/', authority: 'a', headers: { ':path': '/admin' } });
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, ':path');
  }
});

async function property(f: Filter, path: string, extra: Partial<FilterRequest> = {}): Promise<{ status: number; value: Buffer }> {
  const o = await f.handleRequest(request(`prop:${path}`, extra));
  const m = /^status=(\d+) value=([0-9a-f]*)$/.exec(messages(o)[0]);
  assert.ok(m, messages(o)[0]);
  return { status: Number(m![1]), value: Buffer.from(m![2], 'hex') };
}

const claims = { sub: 'alice', n: 3.5, ok: true, scope: 'a b', aud: ['x', 'y'], address: { country: 'FR' } };
const identity: Partial<FilterRequest> = {
  source: { principal: 'spiffe://bank.example/ns/web/sa/frontend', address: '10.1.2.3:4567' },
  metadata: { 'envoy.filters.http.jwt_authn': { user: claims } },
};

test('properties: strings raw, integers int64 LE, bools 1 byte, absent NOT_FOUND', async () => {
  const f = await filter({ rootId: 'policy-root' });
  assert.equal(await property(f, 'connection/uri_san_peer_certificate', identity), { status: 0, value: Buffer.from('spiffe://bank.example/ns/web/sa/frontend') });
  assert.is((await property(f, 'connection/uri_san_peer_certificate')).status, 1);
  assert.equal((await property(f, 'connection/mtls', identity)).value, Buffer.from([1]));
  assert.equal((await property(f, 'connection/mtls')).value, Buffer.from([0]));
  assert.is((await property(f, 'source/port', identity)).value.readBigInt64LE(), 4567n);
  assert.equal((await property(f, 'source/address', identity)).value.toString(), '10.1.2.3:4567');
  assert.equal((await property(f, 'request/path')).value.toString(), '/cards/42?page=2');
  assert.equal((await property(f, 'request/url_path')).value.toString(), '/cards/42');
  assert.equal((await property(f, 'request/query')).value.toString(), 'page=2');
  assert.equal((await property(f, 'request/headers/x-test')).value.toString(), 'prop:request/headers/x-test');
  assert.equal((await property(f, 'plugin_root_id')).value.toString(), 'policy-root');
  // Envoy's attribute wrappers cannot be serialized whole: SERIALIZATION_FAILURE (3)
  assert.is((await property(f, 'request/headers')).status, 3);
  assert.is((await property(f, 'connection/uri_san_peer_certificate/x', identity)).status, 1);
  assert.is((await property(f, 'no_such_thing')).status, 1);
  const overridden = await property(f, 'connection/requested_server_name', { properties: { 'connection.requested_server_name': 'card' } });
  assert.equal(overridden.value.toString(), 'card');
});

test('dynamic metadata: a Struct comes back as a CEL map in the pairs format, values by type', async () => {
  const f = await filter();
  const user = await property(f, 'metadata/filter_metadata/envoy.filters.http.jwt_authn/user', identity);
  assert.is(user.status, 0);
  const entries = new Map(decodePairsRaw(user.value).map(([k, v]) => [k.toString(), v]));
  assert.equal([...entries.keys()], Object.keys(claims));
  assert.is(entries.get('sub')!.toString(), 'alice');
  assert.is(entries.get('n')!.readDoubleLE(), 3.5);
  assert.equal(entries.get('ok'), Buffer.from([1]));
  assert.equal(decodePairsRaw(entries.get('aud')!).map(([k, v]) => [k.toString(), v.length]), [['x', 0], ['y', 0]]);
  assert.equal(decodePairs(entries.get('address')!), [['country', 'FR']]);
  // a single claim: raw bytes; a number: a double
  assert.equal((await property(f, 'metadata/filter_metadata/envoy.filters.http.jwt_authn/user/sub', identity)).value.toString(), 'alice');
  assert.is((await property(f, 'metadata/filter_metadata/envoy.filters.http.jwt_authn/user/n', identity)).value.readDoubleLE(), 3.5);
  assert.equal((await property(f, 'metadata/filter_metadata/envoy.filters.http.jwt_authn/user/aud/1', identity)).value.toString(), 'y');
  // no identity context: NOT_FOUND; a null anywhere: SERIALIZATION_FAILURE, as Envoy
  assert.is((await property(f, 'metadata/filter_metadata/envoy.filters.http.jwt_authn/user')).status, 1);
  const withNull = { metadata: { 'envoy.filters.http.jwt_authn': { user: { sub: 'a', x: null } } } };
  assert.is((await property(f, 'metadata/filter_metadata/envoy.filters.http.jwt_authn/user', withNull)).status, 3);
  // the whole `metadata` attribute is a message: serialized envoy.config.core.v3.Metadata
  const whole = await property(f, 'metadata', identity);
  assert.is(whole.status, 0);
  const decoded = Metadata.decode(whole.value) as unknown as { filter_metadata: Record<string, protobuf.Message> };
  const struct = Struct.toObject(decoded.filter_metadata['envoy.filters.http.jwt_authn']);
  assert.equal(struct.fields.user.structValue.fields.address.structValue.fields.country, { stringValue: 'FR' });
  assert.equal(struct.fields.user.structValue.fields.aud.listValue.values, [{ stringValue: 'x' }, { stringValue: 'y' }]);
  assert.equal(struct.fields.user.structValue.fields.n, { numberValue: 3.5 });
});

test('dynamic metadata as a message: non-ASCII text, nesting, every value type, byte for byte through an independent decoder', async () => {
  const f = await filter();
  const fingerprint = { iss: 'spiffe://bank.example/ns/web/sa/frontend', iat: 1764400000, exp: 1764400030, jti: 'a'.repeat(200) };
  const user = {
    sub: 'zoë', 'ключ': '東京 🚀', long: `${'é'.repeat(70)}🚀`, empty: '', n: -2.25, big: 12n, yes: true, no: false, nothing: null,
    roles: ['admin', 'ü', [1, 'two'], { deep: { deeper: ['x'] } }], address: { country: 'FR', city: 'Besançon' },
  };
  const other = { only: 'ascii' };
  const whole = await property(f, 'metadata', { metadata: { 'envoy.filters.http.jwt_authn': { user, fingerprint }, 'filtré': other } });
  assert.is(whole.status, 0);
  const decoded = Metadata.toObject(Metadata.decode(whole.value), { longs: Number }) as { filter_metadata: Record<string, unknown> };
  assert.equal(Object.keys(decoded.filter_metadata), ['envoy.filters.http.jwt_authn', 'filtré']);
  assert.equal(plainStruct(decoded.filter_metadata['envoy.filters.http.jwt_authn']), { user: { ...user, big: 12 }, fingerprint });
  assert.equal(plainStruct(decoded.filter_metadata['filtré']), other);
});

/** google.protobuf.Struct as protobufjs' toObject gives it, back to plain JSON. */
function plainStruct(struct: unknown): Record<string, unknown> {
  const fields = (struct as { fields?: Record<string, unknown> }).fields ?? {};
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, plainValue(v as Record<string, unknown>)]));
}
function plainValue(v: Record<string, unknown>): unknown {
  if ('stringValue' in v) return v.stringValue;
  if ('numberValue' in v) return v.numberValue;
  if ('boolValue' in v) return v.boolValue;
  if ('nullValue' in v) return null;
  if ('structValue' in v) return plainStruct(v.structValue);
  if ('listValue' in v) return ((v.listValue as { values?: Record<string, unknown>[] }).values ?? []).map(plainValue);
  throw new Error(`unexpected Value ${JSON.stringify(v)}`);
}

// An independent decoder: protobufjs with its bundled google/protobuf/struct.proto.
const root = protobuf.Root.fromJSON(protobuf.common.get('google/protobuf/struct.proto')!);
root.add(new protobuf.Type('Metadata').add(new protobuf.MapField('filter_metadata', 1, 'string', 'google.protobuf.Struct')));
const Metadata = root.lookupType('Metadata');
const Struct = root.lookupType('google.protobuf.Struct');

function decodePairsRaw(bytes: Buffer): [Buffer, Buffer][] {
  const count = bytes.readUInt32LE(0);
  const out: [Buffer, Buffer][] = [];
  let at = 4 + count * 8;
  for (let k = 0; k < count; k++) {
    const kl = bytes.readUInt32LE(4 + k * 8);
    const vl = bytes.readUInt32LE(8 + k * 8);
    out.push([bytes.subarray(at, at + kl), bytes.subarray(at + kl + 1, at + kl + 1 + vl)]);
    at += kl + vl + 2;
  }
  return out;
}

test('local reply: status, body, headers, details; the stream ends there and the reply passes on_response_headers', async () => {
  const f = await filter();
  const o = await f.handleRequest(request('reply'));
  assert.is(o.kind, 'reply');
  assert.is(o.status, 403);
  assert.is(text(o.body), 'nope');
  assert.is(o.details, 'access_denied');
  assert.is(o.upstreamRequest, null);
  assert.equal(header(o.headers, 'x-reply'), ['yes']);
  assert.equal(header(o.headers, 'content-type'), ['text/plain']);
  assert.equal(header(o.headers, 'x-resp'), ['1']);
  assert.ok(messages(o).includes('response status=403 request=<2>'));
});

test('request body: readable in on_request_body, replaceable; request headers closed by then', async () => {
  const f = await filter();
  const o = await f.handleRequest(request('body', { method: 'POST', body: 'hello' }));
  assert.is(messages(o)[0], 'body=hello eos=1 headers=<2>');
  assert.is(text(o.upstreamRequest!.body), 'changed');
});

test('upstream answer goes through the response phase', async () => {
  const f = await filter();
  const o = await f.handleRequest(request('headers'), {
    upstream: (req) => ({ status: 201, headers: { 'X-Up': header(req.headers, ':path')![0] }, body: 'created' }),
  });
  assert.is(o.status, 201);
  assert.equal(header(o.headers, 'x-up'), ['/cards/42?page=2']);
  assert.equal(header(o.headers, 'x-resp'), ['1']);
  assert.is(text(o.body), 'created');
});

test('a module without response or end-of-stream callbacks gets the upstream answer as it is', async () => {
  // No callback runs once the response exists, so the host skips the response phase; the
  // caller must still receive exactly what a module with those callbacks would pass on.
  const quiet = await loadFilter(tinyModule({ exports: minimalExports }));
  open.push(quiet);
  const upstream = () => ({ status: 201, headers: [['X-Up', 'a'], [':status', '999'], ['Set-Cookie', 'b'], ['set-cookie', 'c']] as [string, string][], body: 'created' });
  const o = await quiet.handleRequest(request('none', { headers: { 'x-request-id': 'r1' } }), { upstream });
  assert.is(o.kind, 'forward');
  assert.is(o.status, 201);
  assert.equal(o.headers, [['x-up', 'a'], ['set-cookie', 'b'], ['set-cookie', 'c']]);
  assert.is(text(o.body), 'created');
  assert.equal(header(o.upstreamRequest!.headers, 'x-request-id'), ['r1']);
  const seen = await (await filter()).handleRequest(request('none', { headers: { 'x-request-id': 'r1' } }), { upstream });
  assert.equal(seen.headers, o.headers);
  assert.equal(seen.body, o.body);
});

test('logs: per request lines, the sink, the log level, WASI stdout', async () => {
  const sink: string[] = [];
  const f = await filter({ log: (l) => sink.push(`${l.level}:${l.message}`) });
  const o = await f.handleRequest(request('wasi'));
  assert.equal(o.logs.map((l) => [l.level, l.message]), [['info', 'hello from wasi']]);
  assert.ok(sink.includes('info:hello from wasi'));
  const quiet = await filter({ logLevel: 'warn' });
  assert.equal((await quiet.handleRequest(request('wasi'))).logs, []);
});

test('metrics: counters, gauges, histograms, Envoy statuses for misuse', async () => {
  const f = await filter();
  const o = await f.handleRequest(request('metrics'));
  assert.is(messages(o)[0], 'counter=1 negative=2 histget=2 unknown=1');
  await f.handleRequest(request('metrics'));
  assert.equal(f.metrics(), {
    'palisade_decisions.decision=allow': { type: 'counter', value: 2 },
    inflight: { type: 'gauge', value: 7 },
    latency: { type: 'histogram', value: 84, count: 2, sum: 84 },
  });
});

test('shared data: per VM id, across filter instances, compare-and-swap', async () => {
  const vmId = `shared-${process.pid}-${Date.now()}`;
  const a = await filter({ vmId });
  const b = await filter({ vmId });
  const other = await filter({ vmId: `${vmId}-other` });
  assert.is(messages(await a.handleRequest(request('shared', { headers: { 'x-value': 'v1' } })))[0], 'before=<1> set=0');
  assert.is(messages(await b.handleRequest(request('shared', { headers: { 'x-value': 'v2' } })))[0], 'before=v1 set=0');
  assert.is(messages(await a.handleRequest(request('shared', { headers: { 'x-value': 'v3', 'x-cas': 'stale' } })))[0], 'before=v2 set=8');
  assert.is(messages(await other.handleRequest(request('shared', { headers: { 'x-value': 'o' } })))[0], 'before=<1> set=0');
});

test('ticks: proxy_set_tick_period_milliseconds drives proxy_on_tick until close', async () => {
  const f = await filter({ configuration: 'tick' }); // a 5 ms period
  const ticks = () => f.metrics().ticks?.value ?? 0; // the filter defines the metric on its first tick
  // Wait for ticks rather than for a time: a loaded machine fires fewer in a given time.
  const period = () => new Promise((r) => setTimeout(r, 5));
  for (let waited = 0; waited < 2000 && ticks() < 2; waited++) await period();
  assert.ok(ticks() >= 2, `ticks: ${ticks()}`);
  await f.close();
  const atClose = ticks();
  for (let i = 0; i < 6; i++) await period();
  assert.is(ticks(), atClose, 'no tick after close');
});

test('time comes from the injectable clock', async () => {
  const f = await filter({ clock: () => 1_700_000_000_123_456_789n });
  assert.is(messages(await f.handleRequest(request('time')))[0], 'now=1700000000123456789');
});

test('shared queues: enqueue wakes proxy_on_queue_ready on the registering root context', async () => {
  const lines: string[] = [];
  const vmId = `queue-${process.pid}-${Date.now()}`;
  const f = await filter({ vmId, configuration: 'queue', log: (l) => lines.push(l.message) });
  assert.is(messages(await f.handleRequest(request('enqueue')))[0], 'enqueue=0');
  await new Promise((r) => setImmediate(r));
  assert.ok(lines.includes('dequeued job-1'));
});

test('bounds: out-of-range pointers get INVALID_MEMORY_ACCESS, bad map types BAD_ARGUMENT', async () => {
  const f = await filter();
  assert.is(messages(await f.handleRequest(request('oob')))[0], 'oob log=6 out=6 badmap=2');
  assert.is(f.failed, null);
});

test('a trap fails the VM: 503 wasm_fail_stream for this and later requests, the process lives on', async () => {
  const f = await filter();
  const o = await f.handleRequest(request('trap'));
  assert.equal([o.kind, o.status, o.details, o.upstreamRequest], ['reply', 503, 'wasm_fail_stream', null]);
  assert.match(f.failed!, 'proxy_on_request_headers');
  const later = await f.handleRequest(request('none'));
  assert.is(later.status, 503);
  const aborted = await filter();
  const a = await aborted.handleRequest(request('abort'));
  assert.is(a.status, 503);
  assert.ok(a.logs.some((l) => l.level === 'critical' && l.message === 'palisade: filter aborted'), 'the runtime\'s abort logged');
  const exited = await filter();
  assert.is((await exited.handleRequest(request('exit'))).status, 503);
  assert.match(exited.failed!, 'proc_exit called');
});

test('close_stream resets the stream without a response', async () => {
  const f = await filter();
  const o = await f.handleRequest(request('close'));
  assert.equal([o.kind, o.details, o.upstreamRequest], ['reset', 'wasm_close_stream', null]);
});

test('a paused stream nobody continues times out like Envoy\'s stream idle timeout', async () => {
  const f = await filter({ streamTimeoutMs: 30 });
  const o = await f.handleRequest(request('pause'));
  assert.equal([o.status, o.details], [408, 'stream_idle_timeout']);
});

test.run();
