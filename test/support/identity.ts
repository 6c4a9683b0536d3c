import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { credentials, type ClientDuplexStream, type Client } from '@grpc/grpc-js';
import { Agent, request } from 'undici';
import { CertificateAuthority } from '../../ca/ca.ts';
import { createCsr, generateKeyPair } from '../../spiffe/pki.ts';
import { SDS_PROTO, SECRET_TYPE, SECRET_TYPE_URL, sdsServiceConstructor } from '../../agent/xds/sds.ts';
import { loadProtoRoot } from '../../envoy/protos.ts';
import type { DiscoveryRequest, DiscoveryResponse } from '../../agent/xds/sotw.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const TD = 'bank.example';
export const CARD = `spiffe://${TD}/ns/payments/sa/card`;

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `palisade-${prefix}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A freshly initialized CA directory. */
export async function initCa(): Promise<string> {
  const dir = path.join(tempDir('ca'), 'ca');
  await CertificateAuthority.init(dir, TD);
  return dir;
}

/** A new P-256 key and a CSR for it. */
export async function newCsr() {
  const { keys, privateKey } = await generateKeyPair();
  return { keys, privateKey, csr: createCsr(privateKey) };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** HTTPS request to the CA trusting only its bundle; optional client certificate. */
export async function caRequest(
  url: string,
  bundlePem: string,
  options: { method?: string; body?: string | object; contentType?: string; cert?: string; key?: string } = {},
): Promise<{ status: number; json: any; headers: Record<string, unknown> }> {
  const dispatcher = new Agent({ connect: { ca: bundlePem, cert: options.cert, key: options.key } });
  try {
    const body = typeof options.body === 'object' ? JSON.stringify(options.body) : options.body;
    const response = await request(url, {
      method: (options.method ?? (body === undefined ? 'GET' : 'POST')) as 'GET',
      body,
      headers: body === undefined ? {} : { 'content-type': options.contentType ?? 'application/json' },
      dispatcher,
    });
    const text = await response.body.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {
      // PEM or other text answers stay strings
    }
    return { status: response.statusCode, json, headers: response.headers };
  } finally {
    await dispatcher.close();
  }
}

/** A `palisade …` child process with its output collected. */
export interface Proc {
  child: ChildProcess;
  output(): string;
  /** Resolves when the output matches, rejects on exit or timeout. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export function palisade(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Proc {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/palisade.js'), ...args], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    out += chunk.toString();
    waiters.forEach((check) => check());
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => {
    waiters.forEach((check) => check());
    resolve(code);
  }));
  return {
    child,
    output: () => out,
    exited,
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`timed out waiting for ${pattern}; output:\n${out}`)), timeoutMs);
        const done = (err?: Error, match?: RegExpMatchArray) => {
          clearTimeout(timer);
          waiters.delete(check);
          if (err) reject(err);
          else resolve(match!);
        };
        const check = () => {
          const match = out.match(pattern);
          if (match) done(undefined, match);
          else if (child.exitCode !== null || child.signalCode !== null) done(new Error(`process exited (${child.exitCode}) before ${pattern}; output:\n${out}`));
        };
        waiters.add(check);
        check();
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Runs `palisade …` to completion. */
export async function palisadeRun(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; output: string }> {
  const proc = palisade(args, options);
  const code = await proc.exited;
  return { code, output: proc.output() };
}

/** A gRPC SDS client built from Envoy's protos, plus decoding of the Secrets it receives. */
export function sdsClient(socketPath: string) {
  const Service = sdsServiceConstructor();
  const client = new Service(`unix:${socketPath}`, credentials.createInsecure()) as Client & Record<string, any>;
  const Secret = loadProtoRoot([SDS_PROTO, 'envoy/extensions/transport_sockets/tls/v3/secret.proto']).lookupType(SECRET_TYPE);
  const decode = (response: DiscoveryResponse) =>
    Object.fromEntries(
      response.resources.map((any) => {
        if (any.type_url !== SECRET_TYPE_URL) throw new Error(`unexpected type ${any.type_url}`);
        // inline_bytes as text: PEM is what the agent put in.
        const secret = JSON.parse(JSON.stringify(Secret.toObject(Secret.decode(any.value), { bytes: String })), (key, value) =>
          key === 'inline_bytes' ? Buffer.from(value, 'base64').toString() : value,
        );
        return [secret.name as string, secret];
      }),
    );
  return {
    client,
    decode,
    fetch(names: string[]): Promise<DiscoveryResponse> {
      return new Promise((resolve, reject) =>
        client.FetchSecrets({ node: { id: 'test' }, resource_names: names, type_url: SECRET_TYPE_URL }, (err: Error | null, res: DiscoveryResponse) =>
          err ? reject(err) : resolve(res),
        ),
      );
    },
    /** Opens StreamSecrets; responses are queued for `next()`. */
    stream() {
      const call = client.StreamSecrets() as ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;
      const queue: DiscoveryResponse[] = [];
      const waiting: ((r: DiscoveryResponse) => void)[] = [];
      call.on('data', (response: DiscoveryResponse) => {
        const waiter = waiting.shift();
        if (waiter) waiter(response);
        else queue.push(response);
      });
      call.on('error', () => {}); // cancelled at close
      return {
        send: (req: DiscoveryRequest) => call.write({ type_url: SECRET_TYPE_URL, node: { id: 'test' }, ...req }),
        next(timeoutMs = 10_000): Promise<DiscoveryResponse> {
          const queued = queue.shift();
          if (queued) return Promise.resolve(queued);
          return new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('no SDS response')), timeoutMs);
            waiting.push((r) => {
              clearTimeout(timer);
              resolve(r);
            });
          });
        },
        pending: () => queue.length,
        close: () => call.cancel(),
      };
    },
    close: () => client.close(),
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a truthy value. */
export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(intervalMs);
  }
}
