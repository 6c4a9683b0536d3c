/**
 * A gRPC service and its gRPC client through two `palisade agent` processes joined to a real
 * CA: the client's agent with `--outbound`, the service's with `--inbound --app-protocol h2c`
 * and the compiled examples/grpc policy. Every call is decided by that policy.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority } from '../../ca/ca.ts';
import { startCaServer, type CaServer } from '../../ca/server.ts';
import { compiledFile } from '../support/compiled.ts';
import { FRONTEND, TD } from '../agent/sidecar/harness.ts';

const e2e = suite('gRPC through palisade agents');
const CARD_ID = `spiffe://${TD}/ns/payments/sa/card`;
const BIN = fileURLToPath(new URL('../../bin/palisade.js', import.meta.url));
const POLICY = fileURLToPath(new URL('../../examples/grpc/cards.policy.json', import.meta.url));
let dir: string;
let ca: CaServer;
let app: grpc.Server;
let client: grpc.Client;
let appPort = 0;
const agents: ChildProcess[] = [];

/** Starts an agent; resolves with its JSON log lines (live) once its sidecar listens. */
async function agent(id: string, flags: string[]): Promise<{ lines: Record<string, any>[]; listening: Record<string, any> }> {
  const { token } = await ca.ca.createToken(id, 60_000);
  const child = spawn(process.execPath, [BIN, 'agent', '--ca-url', ca.url, '--bundle', join(dir, 'ca', 'bundle.pem'), '--token', token, '--admin', '127.0.0.1:0', ...flags], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  agents.push(child);
  const lines: Record<string, any>[] = [];
  const listening = new Promise<Record<string, any>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${id}: no "sidecar listening" line`)), 60_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const parsed = JSON.parse(line);
        lines.push(parsed);
        if (parsed.msg === 'sidecar listening') {
          clearTimeout(timer);
          resolve(parsed);
        }
      } catch {
        // not a log line
      }
    });
  });
  return { lines, listening: await listening };
}

const raw = (b: Buffer) => b;

e2e.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'palisade-grpc-e2e-'));
  await CertificateAuthority.init(join(dir, 'ca'), TD);
  ca = await startCaServer({ dir: join(dir, 'ca'), port: 0 });
  app = new grpc.Server();
  app.register('/demo.Cards/Get', (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => done(null, Buffer.from(`card ${call.request}`)), raw, raw, 'unary');
  app.register('/demo.Cards/Delete', (_call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => done(null, Buffer.from('deleted')), raw, raw, 'unary');
  appPort = await new Promise<number>((resolve, reject) => app.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
  await writeFile(join(dir, 'cards.wasm'), (await compiledFile(POLICY)).wasm);
});

e2e.after(async () => {
  client?.close();
  for (const child of agents) {
    if (child.exitCode !== null) continue;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  app.forceShutdown();
  await ca.close();
  await rm(dir, { recursive: true, force: true });
});

e2e('unary calls work through --outbound and --inbound --app-protocol h2c; a denied method is PERMISSION_DENIED, logged', async () => {
  const card = await agent(CARD_ID, ['--inbound', '127.0.0.1:0', '--app', `http://127.0.0.1:${appPort}`, '--app-protocol', 'h2c', '--filter', join(dir, 'cards.wasm')]);
  await writeFile(join(dir, 'routes.json'), JSON.stringify({ card: { url: card.listening.inbound, spiffeId: CARD_ID } }));
  const frontend = await agent(FRONTEND, ['--outbound', '127.0.0.1:0', '--routes', join(dir, 'routes.json')]);
  client = new grpc.Client(new URL(frontend.listening.outbound).host, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'card' });
  const unary = (method: string) =>
    new Promise<{ value?: string; code: number }>((resolve) =>
      client.makeUnaryRequest(method, raw, raw, Buffer.from('7'), new grpc.Metadata(), { deadline: Date.now() + 15_000 }, (err, value) =>
        resolve({ value: value?.toString(), code: err?.code ?? grpc.status.OK }),
      ),
    );
  assert.equal(await unary('/demo.Cards/Get'), { value: 'card 7', code: grpc.status.OK });
  assert.equal((await unary('/demo.Cards/Delete')).code, grpc.status.PERMISSION_DENIED);
  const deadline = Date.now() + 5_000;
  while (card.lines.filter((l) => l.msg === 'decision').length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const decisions = card.lines.filter((l) => l.msg === 'decision').map((l) => [l.path, l.decision, l.rule, l.caller]);
  assert.equal(decisions, [
    ['/demo.Cards/Get', 'allow', 'frontend-calls-cards', FRONTEND],
    ['/demo.Cards/Delete', 'deny', 'no-delete', FRONTEND],
  ]);
});

e2e('--app-protocol takes http1 or h2c only: one line, exit 2', () => {
  const run = spawnSync(process.execPath, [BIN, 'agent', '--ca-url', ca.url, '--bundle', join(dir, 'ca', 'bundle.pem'), '--token', 't', '--inbound', '127.0.0.1:0', '--app', 'http://127.0.0.1:1', '--app-protocol', 'h3', '--filter', 'x.wasm'], { encoding: 'utf8' });
  assert.is(run.status, 2);
  assert.match(run.stderr, /--app-protocol must be http1 or h2c, not "h3"/);
  assert.not.match(run.stderr, /\n\s+at /);
});

e2e.run();
