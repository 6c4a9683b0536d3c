/**
 * `palisade agent --control URL --sds unix:PATH` (Envoy mode) as users run it: a real control
 * plane and CA, the agent process, and a gRPC client speaking ECDS to the agent's socket as
 * Envoy does (subscribe to the bootstrap's resource, ACK, NACK). The rollout's applied and
 * refused are Envoy's answers; a filter whose bytes do not match their pin never reaches Envoy;
 * Envoy-mode audit entries name the build Envoy acknowledged.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { credentials, type Client, type ClientDuplexStream } from '@grpc/grpc-js';
import { loadGrpcPackage, loadProtoRoot } from '../../envoy/protos.ts';
import { policyResourceName } from '../../envoy/bootstrap.ts';
import { TYPED_EXTENSION_CONFIG_TYPE } from '../../agent/xds/ecds.ts';
import { palisade, tempDir, removeDir, eventually, sleep, type Proc } from '../support/identity.ts';
import { startPlane, policy, CARD, FRONTEND, type Plane } from '../control/harness.ts';
import { loadFilter } from '../../host/filter.ts';
import { envoyEntry, streamAccessLogs } from '../agent/xds/envoy-access-log.ts';

const envoyMode = suite('palisade agent --control, Envoy mode');
const RESOURCE = policyResourceName('card'); // what `palisade envoy bootstrap --service-name card` names
let dir: string;
let plane: Plane;
const procs: Proc[] = [];
const clients: Client[] = [];

envoyMode.before(async () => {
  dir = tempDir('control-envoy');
  plane = await startPlane();
  writeFileSync(path.join(dir, 'bundle.pem'), plane.bundlePem);
});
envoyMode.after(async () => {
  for (const c of clients) c.close();
  for (const p of procs) await p.stop();
  await plane.close();
  removeDir(dir);
});

/** A `palisade agent --control --sds` process for the card service; its socket once it is ready. */
async function startAgent(name: string, extra: string[] = []): Promise<string> {
  const socket = path.join(dir, `${name}.sock`);
  const token = (await plane.caServer.ca.createToken(CARD, 60_000)).token;
  const agent = palisade(['agent', '--ca-url', plane.caServer.url, '--bundle', path.join(dir, 'bundle.pem'), '--token', token, '--sds', `unix:${socket}`, '--control', plane.control.url, ...extra]);
  procs.push(agent);
  await agent.waitFor(/"agent ready"/);
  return socket;
}

const root = loadProtoRoot(['envoy/extensions/filters/http/wasm/v3/wasm.proto', 'envoy/config/core/v3/extension.proto']);
const Ecds = (loadGrpcPackage(['envoy/service/extension/v3/config_discovery.proto']) as any).envoy.service.extension.v3.ExtensionConfigDiscoveryService;

/** Envoy's ECDS subscription to the card policy on `socket`: the responses in order, and its requests. */
function envoy(socket: string) {
  const client: Client & Record<string, any> = new Ecds(`unix:${socket}`, credentials.createInsecure());
  clients.push(client);
  const stream: ClientDuplexStream<any, any> = client.StreamExtensionConfigs();
  stream.on('error', () => {}); // cancelled at close
  const responses: any[] = [];
  stream.on('data', (r) => responses.push(r));
  const send = (extra: object = {}) => stream.write({ node: { id: 'envoy-card' }, type_url: TYPED_EXTENSION_CONFIG_TYPE, resource_names: [RESOURCE], ...extra });
  send();
  return {
    responses,
    async next(index: number) {
      return eventually(() => responses[index], 20_000);
    },
    ack: (r: any) => send({ version_info: r.version_info, response_nonce: r.nonce }),
    nack: (r: any, kept: string, message: string) => send({ version_info: kept, response_nonce: r.nonce, error_detail: { code: 3, message } }),
  };
}

/** The filter file a response tells Envoy to load: what Envoy would run. */
function served(response: any): Buffer {
  assert.is(response.resources.length, 1);
  const typed = root.lookupType('envoy.config.core.v3.TypedExtensionConfig').decode(response.resources[0].value) as any;
  assert.is(typed.name, RESOURCE);
  const wasm = root.lookupType('envoy.extensions.filters.http.wasm.v3.Wasm').decode(typed.typed_config.value) as any;
  return readFileSync(wasm.config.vm_config.code.local.filename);
}
const servedSha256 = (response: any) => createHash('sha256').update(served(response)).digest('hex');

/** One request decided by `wasm` in the strict host, logged to the agent as Envoy's audit logger would; the policy its audit entry names. */
async function auditedPolicy(socket: string, wasm: Buffer, auditDir: string): Promise<unknown> {
  const filter = await loadFilter(wasm);
  try {
    assert.is(await streamAccessLogs(socket, [[await envoyEntry(filter, frontend!.svid(), CARD)]]), null);
  } finally {
    await filter.close();
  }
  const logged = ++audited;
  const entries = await eventually(() => {
    const segments = path.join(auditDir, 'segments');
    const lines = readdirSync(segments).flatMap((f) => readFileSync(path.join(segments, f), 'utf8').split('\n').filter(Boolean));
    return lines.length >= logged ? lines : undefined;
  }, 20_000);
  return JSON.parse(entries![logged - 1]!).policy;
}
let audited = 0;
let frontend: Awaited<ReturnType<Plane['join']>> | undefined;

const rollout = async () => (await plane.api('GET', '/v1/rollout/card', { token: plane.viewer })).json;
const put = async (paths: string[]) => {
  const r = await plane.api('PUT', '/v1/policies/card', { body: policy('card', CARD, paths) });
  assert.is(r.status, 200);
  return r.json as { version: number; sha256: string };
};

envoyMode('a PUT reaches Envoy over ECDS as a new version of the pinned bytes; applied only once Envoy ACKs it, refused with its error_detail on a NACK', async () => {
  const v1 = await put(['/cards/{id}']);
  const auditDir = path.join(dir, 'audit');
  const socket = await startAgent('card-1', ['--audit-dir', auditDir]);
  const proxy = envoy(socket);
  frontend = await plane.join(FRONTEND);
  const r1 = await proxy.next(0);
  assert.is(servedSha256(r1), v1.sha256);
  // Envoy has not answered: the agent does not claim the filter is enforced.
  await sleep(300);
  assert.equal((await rollout()).agents.map((a: any) => a.version), [], 'no report before Envoy answers');
  proxy.ack(r1);
  const applied = await eventually(async () => (await rollout()).agents.find((a: any) => a.last_report?.status === 'applied'), 20_000);
  assert.equal([applied.version, applied.sha256], [v1.version, v1.sha256]);
  assert.equal(await auditedPolicy(socket, served(r1), auditDir), { sha256: v1.sha256 }, 'Envoy-mode audit names the build Envoy runs');

  const v2 = await put(['/cards/{id}', '/limits']);
  const r2 = await proxy.next(1);
  assert.is.not(r2.version_info, r1.version_info);
  assert.is(servedSha256(r2), v2.sha256);
  // Pushed, not yet accepted: Envoy still runs v1, and its decisions are audited as v1's.
  assert.equal(await auditedPolicy(socket, served(r1), auditDir), { sha256: v1.sha256 });
  proxy.nack(r2, r1.version_info, 'Unable to create Wasm HTTP filter palisade.policy.card');
  const refused = await eventually(async () => (await rollout()).agents.find((a: any) => a.last_report?.status === 'refused'), 20_000);
  assert.is(refused.last_report.reason, 'envoy_nack: Unable to create Wasm HTTP filter palisade.policy.card');
  assert.equal([refused.version, refused.sha256], [v1.version, v1.sha256], 'Envoy still runs v1');
  assert.is((await rollout()).converged, false);
  assert.equal(await auditedPolicy(socket, served(r1), auditDir), { sha256: v1.sha256 }, 'the refused build is never named');
});

envoyMode('a pushed filter whose bytes do not match their pinned sha256 never reaches Envoy', async () => {
  const current = (await plane.api('GET', '/v1/policies/card')).json;
  // Someone with write access to the database swaps the stored filter of the current version.
  const other = Buffer.from('\0asm\x01\0\0\0', 'binary');
  await plane.store.run("UPDATE control_policy_versions SET wasm = $1 WHERE name = 'card' AND version = $2", [other.toString('base64'), current.version]);
  const proxy = envoy(await startAgent('card-2'));
  const refused = await eventually(async () => (await rollout()).agents.find((a: any) => /^sha256_mismatch/.test(a.last_report?.reason ?? '')), 20_000);
  assert.is(refused.last_report.status, 'refused');
  assert.is(refused.version, null);
  await sleep(300);
  assert.equal(proxy.responses, [], 'Envoy was sent nothing');
});

envoyMode.run();
