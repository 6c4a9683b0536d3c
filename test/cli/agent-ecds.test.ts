import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createAdmin } from '../../agent/identity/admin.ts';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { AgentContext } from '../../cli/agent-group.ts';
import { ecdsAgentGroup } from '../../cli/agent-ecds.ts';
import { CliError } from '../../cli/errors.ts';

// `palisade agent --ecds-policy`: the option group wires ECDS into the agent's xDS socket,
// its admin API and its metrics. The agent itself is reduced to its metrics registry.
const dir = mkdtempSync(path.join(tmpdir(), 'palisade-agent-ecds-'));
const manifest = path.join(dir, 'card-service.manifest.json');

function build(bytes: Buffer, sha256 = createHash('sha256').update(bytes).digest('hex')): void {
  writeFileSync(path.join(dir, 'card-service.wasm'), bytes);
  writeFileSync(manifest, JSON.stringify({ name: 'card-service', wasm: { sha256 } }));
}

function context(): AgentContext {
  return { agent: { metrics: new Registry() } as unknown as AgentContext['agent'], log: pino({ level: 'silent' }), xdsServices: [], adminPlugins: [], closers: [] };
}

test.after(() => rmSync(dir, { recursive: true, force: true }));

test('publishes at start, on POST /v1/ecds/publish, and refuses a broken build with a JSON 409', async () => {
  build(Buffer.from('\0asm\x01\0\0\0', 'binary'));
  const ctx = context();
  (await ecdsAgentGroup.prepare({ ecdsPolicy: [manifest], sds: `unix:${dir}/agent.sock` }, ctx))!.setup!(ctx);
  const admin = await createAdmin({ agent: ctx.agent, plugins: ctx.adminPlugins });
  const { app } = admin;
  const headers = { authorization: `Bearer ${admin.token}` };
  try {
    assert.is(ctx.xdsServices.length, 1);
    const anonymous = await app.inject({ method: 'POST', url: '/v1/ecds/publish', payload: { mode: 'dry-run' } });
    assert.equal([anonymous.statusCode, anonymous.json().error.code], [401, 'unauthorized']);
    build(Buffer.from('\0asm\x01\0\0\0\0\x01\x01', 'binary'));
    const ok = await app.inject({ method: 'POST', url: '/v1/ecds/publish', headers });
    assert.is(ok.statusCode, 200);
    const [published] = ok.json().published;
    assert.is(published.resource, 'palisade.policy.card-service');
    assert.match(published.version, published.sha256.slice(0, 16));

    // Switch every served policy to dry-run; a later rebuild keeps the override.
    const dry = await app.inject({ method: 'POST', url: '/v1/ecds/publish', headers, payload: { mode: 'dry-run' } });
    assert.is(dry.json().published[0].configuration, '{"mode":"dry-run"}');
    build(Buffer.from('\0asm\x01\0\0\0\0\x01\x02', 'binary'));
    const rebuilt = await app.inject({ method: 'POST', url: '/v1/ecds/publish', headers });
    assert.is(rebuilt.json().published[0].configuration, '{"mode":"dry-run"}');
    assert.is.not(rebuilt.json().published[0].version, dry.json().published[0].version);
    for (const payload of [{ mode: 'permissive' }, { mode: 'enforce', extra: 1 }, ['enforce']]) {
      const bad = await app.inject({ method: 'POST', url: '/v1/ecds/publish', headers, payload });
      assert.is(bad.statusCode, 400);
      assert.is(bad.json().error.code, 'bad_request');
    }

    build(Buffer.from('\0asm\x01\0\0\0', 'binary'), 'f'.repeat(64));
    const refused = await app.inject({ method: 'POST', url: '/v1/ecds/publish', headers });
    assert.is(refused.statusCode, 409);
    assert.is(refused.json().error.code, 'policy_not_published');
    assert.match(await ctx.agent.metrics.metrics(), /palisade_agent_ecds_publishes_total 4/);
  } finally {
    await admin.close();
    for (const close of ctx.closers) await close();
  }
});

test('needs --sds, and a manifest that verifies', async () => {
  const refused = async (opts: Record<string, unknown>, message: RegExp) => {
    const ctx = context();
    const err = await (async () => ecdsAgentGroup.prepare(opts, ctx))().then(() => undefined, (e: unknown) => e);
    for (const close of ctx.closers) await close();
    assert.ok(err instanceof CliError && err.exitCode === 2 && message.test(err.message), String(err));
  };
  await refused({ ecdsPolicy: [manifest] }, /needs --sds/);
  await refused({ ecdsPolicy: [manifest], sds: 'unix:/tmp/x.sock', ecdsMode: 'audit' }, /--ecds-mode must be enforce or dry-run/);
  await refused({ ecdsPolicy: [path.join(dir, 'none.manifest.json')], sds: 'unix:/tmp/x.sock' }, /cannot read policy manifest/);
});

test.run();
