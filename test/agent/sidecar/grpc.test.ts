/**
 * gRPC through the embedded sidecar: a real @grpc/grpc-js server behind an inbound sidecar
 * (`appProtocol: 'h2c'`) and a real grpc-js client calling through an outbound sidecar (h2c
 * prior knowledge in, h2 over mTLS to the peer), every call decided by the compiled
 * examples/grpc policy. Denials and the sidecar's own refusals reach the stub as gRPC
 * statuses, with the decision logged.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { startInbound, type InboundLimits, type Listener } from '../../../agent/sidecar/inbound.ts';
import { startOutbound } from '../../../agent/sidecar/outbound.ts';
import { FilterSlot } from '../../../agent/sidecar/filter-slot.ts';
import type { AppProtocol } from '../../../agent/sidecar/app-client.ts';
import { compiledFile } from '../../support/compiled.ts';
import { identities, captureLog, CARD } from './harness.ts';
import { loadStrict } from './policies.ts';

const rpc = suite('gRPC through the sidecar');
const ids = await identities();
const log = captureLog();
const POLICY = fileURLToPath(new URL('../../../examples/grpc/cards.policy.json', import.meta.url));

const raw = (b: Buffer) => b;
const text = (s: string) => Buffer.from(s);
const str = (b: Buffer) => b.toString();

/** What the application received, per method. */
const seen: { method: string; deadline: number; te?: string }[] = [];
let app: grpc.Server;
let appPort = 0;
const open: { close(): Promise<void> }[] = [];
const clients: grpc.Client[] = [];

function startApp(): Promise<number> {
  app = new grpc.Server();
  const note = (method: string, call: { getDeadline(): grpc.Deadline; metadata: grpc.Metadata }) =>
    seen.push({ method, deadline: Number(call.getDeadline()), te: call.metadata.get('te')[0] as string | undefined });
  app.register('/demo.Cards/Get', (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
    note('Get', call);
    const trailer = new grpc.Metadata();
    trailer.set('x-card-trailer', 'served');
    done(null, text(`card ${str(call.request)}`), trailer);
  }, raw, raw, 'unary');
  app.register('/demo.Cards/Delete', (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
    note('Delete', call);
    done(null, text('deleted'));
  }, raw, raw, 'unary');
  app.register('/demo.Cards/List', (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    note('List', call);
    for (let i = 0; i < 5; i++) call.write(text(`card ${i}`));
    call.end();
  }, raw, raw, 'serverStream');
  app.register('/demo.Cards/Upload', (call: grpc.ServerReadableStream<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
    note('Upload', call);
    let bytes = 0;
    call.on('data', (b: Buffer) => (bytes += b.length));
    call.on('end', () => done(null, text(String(bytes))));
  }, raw, raw, 'clientStream');
  app.register('/demo.Cards/Chat', (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    note('Chat', call);
    call.on('data', (b: Buffer) => call.write(text(`echo ${str(b)}`)));
    call.on('end', () => call.end());
  }, raw, raw, 'bidi');
  return new Promise((resolve, reject) =>
    app.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
}

async function inbound(appProtocol: AppProtocol, limits: Partial<InboundLimits> = {}): Promise<Listener> {
  const filters = await FilterSlot.create((await compiledFile(POLICY)).wasm, loadStrict);
  const listener = await startInbound({ app: `http://127.0.0.1:${appPort}`, appProtocol, identity: ids.card, filters, logger: log.logger, limits });
  open.push({ close: async () => (await listener.close(), filters.close()) });
  return listener;
}

/** A grpc-js client for the `card` route through a fresh outbound sidecar in front of `target`. */
async function clientVia(target: Listener): Promise<grpc.Client> {
  const outbound = await startOutbound({ routes: { card: { url: target.url, spiffeId: CARD } }, identity: ids.frontend, logger: log.logger });
  open.push(outbound);
  const client = new grpc.Client(`127.0.0.1:${outbound.port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'card' });
  clients.push(client);
  return client;
}

const deadline = () => Date.now() + 10_000;

function unary(client: grpc.Client, method: string, arg: string): Promise<{ value?: string; error?: grpc.ServiceError; trailers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    let trailers: grpc.Metadata | undefined;
    const call = client.makeUnaryRequest(method, raw, raw, text(arg), new grpc.Metadata(), { deadline: deadline() }, (error, value) => {
      // 'status' (with the trailers) may come after the callback; wait for it.
      setImmediate(() => resolve({ value: value && str(value), error: error ?? undefined, trailers }));
    });
    call.on('status', (s: grpc.StatusObject) => (trailers = s.metadata));
  });
}

const decisionFor = (path: string) => [...log.lines].reverse().find((l) => l.path === path);

let main: Listener;
let client: grpc.Client;

rpc.before(async () => {
  appPort = await startApp();
  main = await inbound('h2c');
  client = await clientVia(main);
});

rpc.after(async () => {
  for (const c of clients) c.close();
  for (const o of open.reverse()) await o.close();
  app.forceShutdown();
});

rpc('unary: the answer, the application\'s trailers, the deadline and te: trailers pass through; the call is decided and logged', async () => {
  const { value, error, trailers } = await unary(client, '/demo.Cards/Get', '42');
  assert.is(error, undefined);
  assert.is(value, 'card 42');
  assert.equal(trailers?.get('x-card-trailer'), ['served']);
  const got = [...seen].reverse().find((s) => s.method === 'Get')!;
  assert.ok(Number.isFinite(got.deadline) && got.deadline > Date.now(), 'grpc-timeout reached the application');
  const line = decisionFor('/demo.Cards/Get')!;
  assert.is(line.decision, 'allow');
  assert.is(line.rule, 'frontend-calls-cards');
  assert.is(line.caller, 'spiffe://bank.example/ns/web/sa/frontend');
});

rpc('server streaming, client streaming and bidirectional calls stream both ways', async () => {
  const listed: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const call = client.makeServerStreamRequest('/demo.Cards/List', raw, raw, text(''), new grpc.Metadata(), { deadline: deadline() });
    call.on('data', (b: Buffer) => listed.push(str(b)));
    call.on('error', reject);
    call.on('end', () => resolve());
  });
  assert.equal(listed, ['card 0', 'card 1', 'card 2', 'card 3', 'card 4']);

  const uploaded = await new Promise<string>((resolve, reject) => {
    const call = client.makeClientStreamRequest('/demo.Cards/Upload', raw, raw, new grpc.Metadata(), { deadline: deadline() }, (err, v) => (err ? reject(err) : resolve(str(v!))));
    // Far more than the sidecar's 1 MiB cap on a plain request body: a stream is not a body to cap.
    for (let i = 0; i < 40; i++) call.write(Buffer.alloc(64 * 1024, i));
    call.end();
  });
  assert.is(uploaded, String(40 * 64 * 1024));

  const chat: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const call = client.makeBidiStreamRequest('/demo.Cards/Chat', raw, raw, new grpc.Metadata(), { deadline: deadline() });
    call.on('data', (b: Buffer) => {
      chat.push(str(b));
      if (chat.length < 3) call.write(text(`m${chat.length}`));
      else call.end();
    });
    call.on('error', reject);
    call.on('end', () => resolve());
    call.write(text('m0'));
  });
  assert.equal(chat, ['echo m0', 'echo m1', 'echo m2']);
});

rpc('a denied method is PERMISSION_DENIED, never reaches the application, and its decision is logged', async () => {
  const before = seen.filter((s) => s.method === 'Delete').length;
  const { error } = await unary(client, '/demo.Cards/Delete', '42');
  assert.is(error?.code, grpc.status.PERMISSION_DENIED, error?.details);
  assert.match(error!.details, /"error":"forbidden"/);
  assert.is(seen.filter((s) => s.method === 'Delete').length, before);
  const line = decisionFor('/demo.Cards/Delete')!;
  assert.is(line.decision, 'deny');
  assert.is(line.rule, 'no-delete');
});

rpc('a call straight to the inbound side without a fingerprint is UNAUTHENTICATED, logged as such', async () => {
  const svid = ids.frontend.svid();
  const creds = grpc.credentials.createSsl(Buffer.from(ids.ca.certPem), Buffer.from(svid.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string), Buffer.from(svid.chainPem), {
    checkServerIdentity: () => undefined,
  });
  const direct = new grpc.Client(main.url.replace('https://', ''), creds, { 'grpc.default_authority': 'card', 'grpc.ssl_target_name_override': 'card' });
  clients.push(direct);
  const { error } = await unary(direct, '/demo.Cards/Get', 'no-fingerprint');
  assert.is(error?.code, grpc.status.UNAUTHENTICATED);
  const line = [...log.lines].reverse().find((l) => l.path === '/demo.Cards/Get' && l.decision === 'unauthenticated')!;
  assert.is(line.reason, 'fingerprint_missing');
});

rpc('a gRPC call to an application spoken to over HTTP/1.1 is refused with a clear UNIMPLEMENTED', async () => {
  const http1 = await inbound('http1');
  const { error } = await unary(await clientVia(http1), '/demo.Cards/Get', '1');
  assert.is(error?.code, grpc.status.UNIMPLEMENTED);
  assert.match(error!.details, /--app-protocol h2c/);
});

rpc('many concurrent calls share one mTLS connection: they all pass an inbound side that accepts a single connection', async () => {
  const single = await inbound('h2c', { maxConnections: 1 });
  const via = await clientVia(single);
  const results = await Promise.all(Array.from({ length: 60 }, (_, i) => unary(via, '/demo.Cards/Get', String(i))));
  assert.equal(results.map((r) => r.error?.code ?? 0), Array(60).fill(0));
  assert.equal(results.map((r) => r.value), Array.from({ length: 60 }, (_, i) => `card ${i}`));
});

rpc.run();
