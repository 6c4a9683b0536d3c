import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { credentials, status, type Client, type ClientDuplexStream } from '@grpc/grpc-js';
import { EcdsServer, TYPED_EXTENSION_CONFIG_TYPE, type NackReport } from '../../../agent/xds/ecds.ts';
import { loadGrpcPackage, loadProtoRoot } from '../../../envoy/protos.ts';
import { createXdsServer } from '../../../agent/xds/server.ts';
import { ManifestError } from '../../../envoy/manifest.ts';

// A real gRPC client built from Envoy's protos, over a Unix socket, speaking to the ECDS
// service as Envoy does: subscribe, ACK, NACK.
const dir = mkdtempSync(path.join(tmpdir(), 'palisade-ecds-'));
const socket = path.join(dir, 'agent.sock');
const RESOURCE = 'palisade.policy.demo';
// Builds the tests publish themselves, and the one build the watch test watches: apart, so the
// watcher (alive until the server closes) never republishes a build a later test wrote.
const builds = path.join(dir, 'builds');
const watched = path.join(dir, 'watched');
mkdirSync(builds);
mkdirSync(watched);
const nacks: NackReport[] = [];
const acks: string[] = [];
const errors: Error[] = [];
const ecds = new EcdsServer({
  codeDir: path.join(dir, 'code'),
  onNack: (r) => nacks.push(r),
  onAck: (v) => acks.push(v),
  onError: (e) => errors.push(e),
});
// The agent's shared xDS server (the one SDS is served on).
const server = createXdsServer(socket, [ecds.service]);
const pkg = loadGrpcPackage(['envoy/service/extension/v3/config_discovery.proto']) as any;
const Ecds = pkg.envoy.service.extension.v3.ExtensionConfigDiscoveryService;
const root = loadProtoRoot(['envoy/extensions/filters/http/wasm/v3/wasm.proto', 'envoy/config/core/v3/extension.proto']);
let client: Client & Record<string, any>;

/** Writes a (tiny, valid) wasm module and its manifest, as `palisade compile` would, atomically. */
function compilePolicy(marker: number, opts: { lieAboutHash?: boolean; name?: string; dir?: string } = {}): string {
  const name = opts.name ?? 'demo';
  const dir = opts.dir ?? builds;
  // Empty module plus a custom section carrying the marker, so every build differs.
  const custom = Buffer.from([0x00, 0x02, 0x01, 0x6d, marker]);
  const wasm = Buffer.concat([Buffer.from('\0asm\x01\0\0\0', 'binary'), custom]);
  writeFileSync(path.join(dir, `${name}.wasm`), wasm);
  const sha256 = opts.lieAboutHash ? '0'.repeat(64) : createHash('sha256').update(wasm).digest('hex');
  const manifest = path.join(dir, `${name}.manifest.json`);
  writeFileSync(`${manifest}.tmp`, JSON.stringify({ name, wasm: { file: `${name}.wasm`, sha256 } }));
  renameSync(`${manifest}.tmp`, manifest);
  return manifest;
}

/** Responses of one stream, in order. */
function open(): { stream: ClientDuplexStream<any, any>; next: () => Promise<any>; failure: Promise<any> } {
  const stream: ClientDuplexStream<any, any> = client.StreamExtensionConfigs();
  const queue: any[] = [];
  const waiting: ((r: any) => void)[] = [];
  stream.on('data', (r) => (waiting.length ? waiting.shift()!(r) : queue.push(r)));
  const failure = new Promise((resolve) => stream.on('error', resolve));
  const next = () => (queue.length ? Promise.resolve(queue.shift()) : within(new Promise((resolve) => waiting.push(resolve)), 'response'));
  return { stream, next, failure };
}

// Deadlines only name what never came; generous, as a loaded machine (a parallel test run) is slow.
function within<T>(p: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)))])
    .finally(() => clearTimeout(timer));
}

const request = (extra: object = {}) => ({ node: { id: 'envoy-1' }, type_url: TYPED_EXTENSION_CONFIG_TYPE, resource_names: [RESOURCE], ...extra });

/** Decodes a response's one TypedExtensionConfig down to the Wasm plugin config. */
function decode(response: any) {
  assert.is(response.type_url, TYPED_EXTENSION_CONFIG_TYPE);
  assert.is(response.resources.length, 1);
  const typed = root.lookupType('envoy.config.core.v3.TypedExtensionConfig').decode(response.resources[0].value) as any;
  assert.is(typed.name, RESOURCE);
  assert.is(typed.typed_config.type_url, 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm');
  const wasm = root.lookupType('envoy.extensions.filters.http.wasm.v3.Wasm').decode(typed.typed_config.value) as any;
  const configuration = root.lookupType('google.protobuf.StringValue').decode(wasm.config.configuration.value) as any;
  return { config: wasm.config, filename: wasm.config.vm_config.code.local.filename as string, configuration: configuration.value as string };
}

test.before(async () => {
  await server.start();
  client = new Ecds(`unix:${socket}`, credentials.createInsecure());
});

test.after(async () => {
  ecds.close();
  client.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test('nothing is served before a policy is published: Fetch says UNAVAILABLE', async () => {
  const err: any = await new Promise((resolve) => client.FetchExtensionConfigs(request(), (e: unknown) => resolve(e)));
  assert.is(err.code, status.UNAVAILABLE);
});

test('initial resource, ACK, update pushed on publish, NACK keeps the previous version', async () => {
  const first = ecds.publish(compilePolicy(1), { configuration: { mode: 'dry-run' } });
  const { stream, next } = open();
  stream.write(request());
  const r1 = await next();
  const d1 = decode(r1);
  assert.is(r1.version_info, first.version);
  assert.ok(r1.nonce);
  assert.is(d1.config.root_id, RESOURCE);
  assert.is(d1.config.fail_open, false);
  assert.is(d1.config.vm_config.runtime, 'envoy.wasm.runtime.v8');
  assert.equal(JSON.parse(d1.configuration), { mode: 'dry-run' });
  // The path Envoy loads holds exactly the bytes the manifest's sha256 names, and says so.
  const bytes = readFileSync(d1.filename);
  assert.is(createHash('sha256').update(bytes).digest('hex'), first.sha256);
  assert.ok(path.isAbsolute(d1.filename) && d1.filename.includes(first.sha256));

  stream.write(request({ version_info: r1.version_info, response_nonce: r1.nonce }));
  await waitFor(() => acks.includes(first.version));
  assert.ok(acks.includes(first.version), "ACK recorded");

  const second = ecds.publish(compilePolicy(2));
  const r2 = await next();
  assert.is(r2.version_info, second.version);
  assert.is.not(r2.version_info, r1.version_info);
  assert.is.not(r2.nonce, r1.nonce);
  assert.is(decode(r2).filename, second.wasmPath);
  assert.is(readFileSync(d1.filename).equals(bytes), true, 'the copy Envoy runs now is never rewritten');

  // Envoy rejects v2: it answers with its previous version and an error_detail.
  stream.write(request({ version_info: r1.version_info, response_nonce: r2.nonce, error_detail: { code: 3, message: 'Unable to create Wasm HTTP filter' } }));
  await waitFor(() => nacks.length === 1);
  assert.equal(nacks[0], { resource: [RESOURCE], rejectedVersion: second.version, keptVersion: first.version, message: 'Unable to create Wasm HTTP filter', node: 'envoy-1' });
  assert.is(ecds.published(RESOURCE)?.version, first.version);
  assert.is(ecds.stats.nacks, 1);
  // A reconnecting Envoy gets the version that worked, not the rejected one.
  const fetched: any = await new Promise((resolve, reject) => client.FetchExtensionConfigs(request(), (e: unknown, r: unknown) => (e ? reject(e) : resolve(r))));
  assert.is(fetched.version_info, first.version);
  assert.is(decode(fetched).filename, d1.filename);
  // Publishing what is already served (a touched manifest) pushes nothing.
  const pushes = ecds.stats.pushes;
  assert.is(ecds.publish(compilePolicy(1), { configuration: { mode: 'dry-run' } }), ecds.published(RESOURCE));
  assert.is(ecds.stats.pushes, pushes, 'no push for the version already served');
  stream.end();
});

test('a stale nonce is ignored; a replaced manifest is pushed to every open stream', async () => {
  const a = open();
  const b = open();
  a.stream.write(request());
  b.stream.write(request({ resource_names: [] })); // wildcard
  const [ra, rb] = await Promise.all([a.next(), b.next()]);
  a.stream.write(request({ version_info: ra.version_info, response_nonce: 'stale' }));
  ecds.watch(path.join(watched, 'demo.manifest.json'));
  const third = compilePolicy(3, { dir: watched });
  const [ua, ub] = await Promise.all([a.next(), b.next()]);
  assert.is(ua.version_info, ecds.published(RESOURCE)!.version);
  assert.is(ub.version_info, ua.version_info);
  assert.is.not(ua.version_info, ra.version_info);
  assert.is.not(ub.version_info, rb.version_info);
  assert.is(decode(ub).filename, ecds.published(RESOURCE)!.wasmPath);
  assert.ok(third);

  // A build whose wasm does not match its manifest is refused; the served version stays.
  const before = ecds.published(RESOURCE)!.version;
  compilePolicy(4, { lieAboutHash: true, dir: watched });
  await waitFor(() => errors.length === 1);
  assert.instance(errors[0], ManifestError);
  assert.match(errors[0]!.message, /does not match the manifest/);
  assert.is(ecds.published(RESOURCE)!.version, before);
  a.stream.end();
  b.stream.end();
});

test('publish refuses a wasm that does not match its manifest', () => {
  assert.throws(() => ecds.publish(compilePolicy(5, { lieAboutHash: true })), (e: unknown) => e instanceof ManifestError);
});

test('delta xDS is not offered: UNIMPLEMENTED, so Envoy must use state of the world', async () => {
  const delta = client.DeltaExtensionConfigs();
  const err: any = await within(new Promise((resolve) => delta.on('error', resolve)), 'delta error');
  assert.is(err.code, status.UNIMPLEMENTED);
});

test('a request for another resource type ends the stream, or fails the Fetch, with INVALID_ARGUMENT', async () => {
  const cluster = { type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster' };
  const { stream, failure } = open();
  stream.write(request(cluster));
  const err: any = await within(failure, 'stream error');
  assert.is(err.code, status.INVALID_ARGUMENT);
  const fetched: any = await new Promise((resolve) => client.FetchExtensionConfigs(request(cluster), (e: unknown) => resolve(e)));
  assert.is(fetched?.code, status.INVALID_ARGUMENT);
});

test('copies nobody can load any more are deleted: the replaced one after the ACK, a rejected one after the NACK', async () => {
  const { stream, next } = open();
  stream.write(request());
  const r0 = await next();
  const old = decode(r0).filename;
  stream.write(request({ version_info: r0.version_info, response_nonce: r0.nonce }));
  const v1 = ecds.publish(compilePolicy(11));
  const r1 = await next();
  assert.ok(existsSync(old), 'kept while the new version is in flight and the old one is what Envoy runs');
  stream.write(request({ version_info: r1.version_info, response_nonce: r1.nonce }));
  await waitFor(() => !existsSync(old));
  assert.not.ok(existsSync(old), 'the replaced copy is deleted once Envoy acknowledged the new one');
  assert.ok(existsSync(v1.wasmPath));

  const v2 = ecds.publish(compilePolicy(12));
  const r2 = await next();
  stream.write(request({ version_info: r1.version_info, response_nonce: r2.nonce, error_detail: { code: 3, message: 'rejected' } }));
  await waitFor(() => !existsSync(v2.wasmPath));
  assert.not.ok(existsSync(v2.wasmPath), 'the rejected copy is deleted');
  assert.ok(existsSync(v1.wasmPath), 'the version Envoy kept stays');
  assert.is(ecds.published(RESOURCE)?.version, v1.version);
  stream.end();
});

test('each response is answered once: a resubscription on an acknowledged nonce is not another ACK', async () => {
  const { stream, next } = open();
  stream.write(request());
  const r0 = await next();
  const acked = ecds.stats.acks;
  stream.write(request({ version_info: r0.version_info, response_nonce: r0.nonce }));
  stream.write(request({ version_info: r0.version_info, response_nonce: r0.nonce, resource_names: [] })); // Envoy widens on the same nonce
  await next(); // the resubscription is answered, so both requests were handled
  assert.is(ecds.stats.acks, acked + 1);
  stream.end();
});

test('a published policy goes only to the streams subscribed to it, never to one that has not asked yet', async () => {
  const other = open(); // open while the demo stream's round trip below runs, then silent until after the publish
  const demo = open();
  demo.stream.write(request());
  await demo.next();
  const published = ecds.publish(compilePolicy(21, { name: 'other' }));
  other.stream.write(request({ resource_names: ['palisade.policy.other'] }));
  assert.is((await other.next()).version_info, published.version, 'the first response is what the first request asked for');
  const renewed = ecds.publish(compilePolicy(22));
  assert.is((await demo.next()).version_info, renewed.version, 'the demo stream got nothing for the other policy');
  demo.stream.end();
  other.stream.end();
});

/** Polls until `condition` holds; gives up after 10 s (the caller's assertion reports it). */
async function waitFor(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

test.run();
