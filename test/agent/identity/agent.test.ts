import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startCaServer, type CaServer } from '../../../ca/server.ts';
import type { FastifyPluginAsync } from 'fastify';
import { createAdmin, type AdminServer } from '../../../agent/identity/admin.ts';
import { startAgent, type IdentityAgent } from '../../../agent/identity/agent.ts';
import { CaRejectedError, CaUntrustedError } from '../../../agent/identity/client.ts';
import { createSdsService } from '../../../agent/xds/sds.ts';
import { createXdsServer, type XdsServer } from '../../../agent/xds/server.ts';
import { CARD, eventually, initCa, removeDir, sdsClient, tempDir } from '../../support/identity.ts';

interface Ctx {
  dir: string;
  server: CaServer;
  bundle: string;
  agent: IdentityAgent;
  xds: XdsServer;
  socket: string;
  admin: AdminServer;
  adminUrl: string;
  sockDir: string;
}
const test = suite<Ctx>('agent');

test.before(async (ctx) => {
  ctx.dir = await initCa();
  ctx.server = await startCaServer({ dir: ctx.dir, port: 0, svidTtlMs: 60_000, joinFailureLimit: 1000 });
  ctx.bundle = readFileSync(path.join(ctx.dir, 'bundle.pem'), 'utf8');
  const { token } = await ctx.server.ca.createToken(CARD, 60_000);
  ctx.agent = await startAgent({ caUrl: ctx.server.url, bundlePem: ctx.bundle, token, initialBackoffMs: 50 });
  ctx.sockDir = tempDir('sds');
  ctx.socket = path.join(ctx.sockDir, 'sds.sock');
  ctx.xds = createXdsServer(`unix:${ctx.socket}`, [createSdsService(ctx.agent, { registry: ctx.agent.metrics })]);
  await ctx.xds.start();
  ctx.admin = await createAdmin({
    agent: ctx.agent,
    port: 0,
    plugins: [async (app) => void app.get('/v1/extra', async () => ({ extra: true }))],
  });
  ctx.adminUrl = (await ctx.admin.listen()).url;
});
test.after(async (ctx) => {
  ctx.agent.close();
  await ctx.xds.close();
  await ctx.admin.close();
  await ctx.server.close();
  removeDir(path.dirname(ctx.dir));
  removeDir(ctx.sockDir);
});

test('bootstrap: the agent holds an SVID for its token identity, its key only in memory', (ctx) => {
  const svid = ctx.agent.svid();
  assert.is(svid.spiffeId, CARD);
  assert.is(new X509Certificate(svid.chainPem).subjectAltName, `URI:${CARD}`);
  assert.is(svid.privateKey.asymmetricKeyType, 'ec');
  assert.equal(ctx.agent.trustBundle(), [ctx.bundle]);
  assert.is(ctx.agent.health().status, 'ok');
});

test('FetchSecrets: default is the SVID and key, ROOTCA the bundle (Envoy protos)', async (ctx) => {
  const sds = sdsClient(ctx.socket);
  try {
    const secrets = sds.decode(await sds.fetch(['default', 'ROOTCA']));
    assert.is(secrets.default.tls_certificate.certificate_chain.inline_bytes, ctx.agent.svid().chainPem);
    assert.is(secrets.default.tls_certificate.private_key.inline_bytes, ctx.agent.svid().keyPem);
    assert.is(secrets.ROOTCA.validation_context.trusted_ca.inline_bytes, ctx.bundle);
    const onlyRoot = sds.decode(await sds.fetch(['ROOTCA']));
    assert.equal(Object.keys(onlyRoot), ['ROOTCA']);
  } finally {
    sds.close();
  }
});

test('StreamSecrets: ACK is quiet, NACK is counted and not resent, stale nonces ignored, rotation pushed to every stream', async (ctx) => {
  const sds = sdsClient(ctx.socket);
  const a = sds.stream();
  const b = sds.stream();
  try {
    a.send({ resource_names: ['default', 'ROOTCA'] });
    b.send({ resource_names: ['default'] });
    const first = await a.next();
    const firstB = await b.next();
    assert.is(first.version_info, ctx.agent.svid().serial);
    assert.equal(Object.keys(sds.decode(first)).sort(), ['ROOTCA', 'default']);
    assert.equal(Object.keys(sds.decode(firstB)), ['default']);
    assert.ok(first.nonce.length > 0);
    a.send({ resource_names: ['default', 'ROOTCA'], version_info: first.version_info, response_nonce: first.nonce }); // ACK
    b.send({ resource_names: ['default'], version_info: '', response_nonce: firstB.nonce, error_detail: { code: 3, message: 'bad key' } }); // NACK
    a.send({ resource_names: ['default', 'ROOTCA'], version_info: 'old', response_nonce: 'stale-nonce' });
    await eventually(async () => (await ctx.agent.metrics.getSingleMetricAsString('palisade_agent_sds_nacks_total')).includes(' 1'));
    assert.is(a.pending() + b.pending(), 0, 'ACK, NACK and stale requests get no response');

    const old = ctx.agent.svid();
    const renewed = await ctx.agent.rotate();
    const pushedA = await a.next();
    const pushedB = await b.next();
    for (const [pushed, previous] of [[pushedA, first], [pushedB, firstB]] as const) {
      assert.is(pushed.version_info, renewed.serial);
      assert.is.not(pushed.nonce, previous.nonce);
      assert.is(sds.decode(pushed).default.tls_certificate.certificate_chain.inline_bytes, renewed.chainPem);
    }
    assert.is.not(renewed.keyPem, old.keyPem, 'new key on every rotation');
    // Subscribing to more names on the current nonce gets an answer with them.
    b.send({ resource_names: ['default', 'ROOTCA'], version_info: pushedB.version_info, response_nonce: pushedB.nonce });
    assert.equal(Object.keys(sds.decode(await b.next())).sort(), ['ROOTCA', 'default']);
  } finally {
    a.close();
    b.close();
    sds.close();
  }
});

test('SDS refuses what it does not serve: another type on the stream, DeltaSecrets', async (ctx) => {
  const sds = sdsClient(ctx.socket);
  const grpcCode = (call: { on(event: 'error', cb: (err: { code: number }) => void): unknown }) =>
    new Promise<number>((resolve) => call.on('error', (err) => resolve(err.code)));
  try {
    const wrongType = sds.client.StreamSecrets();
    const wrongCode = grpcCode(wrongType);
    wrongType.write({ type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster', resource_names: [] });
    assert.is(await wrongCode, grpcStatus.INVALID_ARGUMENT);
    const delta = sds.client.DeltaSecrets();
    const deltaCode = grpcCode(delta);
    delta.write({ type_url: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret' });
    assert.is(await deltaCode, grpcStatus.UNIMPLEMENTED);
    assert.is(sds.decode(await sds.fetch(['default'])).default.name, 'default', 'the server is unaffected');
  } finally {
    sds.close();
  }
});

test('admin: healthz, metrics, svid without the key, plugin routes, JSON 404', async (ctx) => {
  const health = await (await fetch(`${ctx.adminUrl}/healthz`)).json();
  assert.is(health.status, 'ok');
  const metrics = await (await fetch(`${ctx.adminUrl}/metrics`)).text();
  assert.match(metrics, /palisade_agent_svid_expiry_timestamp_seconds \d+/);
  assert.match(metrics, /palisade_agent_svid_rotations_total \d+/);
  const svid = await (await fetch(`${ctx.adminUrl}/v1/svid`)).json();
  assert.is(svid.spiffe_id, CARD);
  assert.is(svid.serial, ctx.agent.svid().serial);
  assert.not.match(JSON.stringify(svid), /PRIVATE KEY/);
  assert.equal(await (await fetch(`${ctx.adminUrl}/v1/extra`)).json(), { extra: true });
  const missing = await fetch(`${ctx.adminUrl}/nope`);
  assert.is(missing.status, 404);
  assert.is((await missing.json()).error.code, 'not_found');
  const refused = await createAdmin({ agent: ctx.agent, host: '0.0.0.0' }).then(() => null, (err: Error) => err.message);
  assert.match(refused ?? '', /loopback/);
});

test('an admin route that declares a schema fails to register: the admin API loads no schema compiler', async (ctx) => {
  const withSchema: FastifyPluginAsync = async (app) => {
    app.post('/v1/typed', { schema: { body: { type: 'object' } } }, async () => ({}));
  };
  const failed = await createAdmin({ agent: ctx.agent, plugins: [withSchema] }).then(
    async (admin) => admin.listen().then(() => admin.close().then(() => null), async (err: Error) => (await admin.close(), err.message)),
    (err: Error) => err.message,
  );
  assert.match(failed ?? '', /declare no schemas/);
});

test('revocation blocks renewal; the agent keeps its SVID and reports degraded', async (ctx) => {
  const current = ctx.agent.svid();
  await ctx.server.ca.revoke(current.serial);
  const error = await ctx.agent.rotate().then(() => null, (err: Error) => err);
  assert.instance(error, CaRejectedError);
  assert.is((error as CaRejectedError).code, 'svid_revoked');
  assert.is(ctx.agent.svid().serial, current.serial);
});

test('bootstrap refuses a bad token and a bundle that does not verify the CA', async (ctx) => {
  const bad = await startAgent({ caUrl: ctx.server.url, bundlePem: ctx.bundle, token: 'pjt_wrong' }).then(() => null, (err: Error) => err);
  assert.instance(bad, CaRejectedError);
  assert.is((bad as CaRejectedError).code, 'token_unknown');
  const otherDir = await initCa();
  const otherBundle = readFileSync(path.join(otherDir, 'bundle.pem'), 'utf8');
  removeDir(path.dirname(otherDir));
  const { token } = await ctx.server.ca.createToken(CARD, 60_000);
  const untrusted = await startAgent({ caUrl: ctx.server.url, bundlePem: otherBundle, token }).then(() => null, (err: Error) => err);
  assert.instance(untrusted, CaUntrustedError);
  // The refused handshake did not consume the token.
  const agent = await startAgent({ caUrl: ctx.server.url, bundlePem: ctx.bundle, token });
  agent.close();
});

test.run();
