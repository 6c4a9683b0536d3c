import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { createSdsService, type SecretSource } from '../../../agent/xds/sds.ts';
import { createXdsServer } from '../../../agent/xds/server.ts';
import type { DiscoveryResponse } from '../../../agent/xds/sotw.ts';
import { removeDir, sdsClient, tempDir } from '../../support/identity.ts';

// The shared state-of-the-world stream (sotw.ts) where Envoy's protocol decides a detail,
// driven through the real SDS service over a real gRPC Unix socket. The identity is fixed
// text: what is under test is the stream, not the secrets. Every test learns that the
// server handled a request by making the next request on the same stream get an answer
// (a stream is ordered), never by waiting.
const dir = tempDir('sotw');
const socket = path.join(dir, 'agent.sock');
const identity = Object.assign(new EventEmitter(), {
  svid: () => ({ chainPem: 'chain', keyPem: 'key', serial: 'serial-1' }),
  trustBundle: () => ['bundle'],
}) satisfies SecretSource;
const registry = new Registry();
const log: string[] = [];
const server = createXdsServer(socket, [createSdsService(identity, { registry, log: (line) => log.push(line) })]);
const sds = sdsClient(socket);
const nacks = async () => Number((await registry.getSingleMetricAsString('palisade_agent_sds_nacks_total')).match(/ (\d+)$/m)![1]);

test.before(() => server.start());
test.after(async () => {
  sds.close();
  await server.close();
  removeDir(dir);
});

test('nothing is sent for names that do not exist (Envoy NACKs an SDS response without resources); Fetch says UNAVAILABLE', async () => {
  const stream = sds.stream();
  try {
    stream.send({ resource_names: ['no-such-secret'] });
    stream.send({ resource_names: ['default'] });
    const first = await stream.next();
    assert.ok(first.resources?.length, 'no response without resources');
    assert.equal(Object.keys(sds.decode(first)), ['default'], 'the first response answers the second request');
    const err: any = await sds.fetch(['no-such-secret']).then(() => undefined, (e: unknown) => e);
    assert.is(err?.code, status.UNAVAILABLE);
  } finally {
    stream.close();
  }
});

/** Runs `exchange` on a StreamSecrets stream subscribed to `default`, given its first response; closes it after. */
async function subscribed(exchange: (stream: ReturnType<typeof sds.stream>, first: DiscoveryResponse) => Promise<void>): Promise<void> {
  const stream = sds.stream();
  try {
    stream.send({ resource_names: ['default'] });
    await exchange(stream, await stream.next());
  } finally {
    stream.close();
  }
}

test('an error_detail that is set but empty is a NACK, not an ACK', () =>
  subscribed(async (stream, first) => {
    const before = await nacks();
    stream.send({ resource_names: ['default'], version_info: '', response_nonce: first.nonce, error_detail: {} });
    stream.send({ resource_names: [], response_nonce: '' }); // resubscribe: answered after the NACK was handled
    await stream.next();
    assert.is(await nacks(), before + 1);
    assert.is(log.at(-1), 'SDS NACK from test for version : ');
  }));

test('each response is answered once: a resubscription on an already NACKed nonce is not another NACK', () =>
  subscribed(async (stream, first) => {
    const before = await nacks();
    const nack = { version_info: '', response_nonce: first.nonce, error_detail: { code: 13, message: 'bad key' } };
    stream.send({ resource_names: ['default'], ...nack });
    stream.send({ resource_names: ['ROOTCA', 'default'], ...nack }); // Envoy adds a name on the same nonce
    const widened = await stream.next();
    assert.equal(Object.keys(sds.decode(widened)).sort(), ['ROOTCA', 'default']);
    assert.is(await nacks(), before + 1);
  }));

test.run();
