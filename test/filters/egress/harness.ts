/**
 * Egress tests' world: a real CA, a real identity agent holding its SVID in memory, the
 * agent's admin server with the signing endpoint, the compiled egress filter in the strict
 * host, and an http_call cluster that is a real HTTP client (as Envoy's signer cluster is).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { startCaServer, type CaServer } from '../../../ca/server.ts';
import { createAdmin, type AdminServer } from '../../../agent/identity/admin.ts';
import { startAgent, type IdentityAgent } from '../../../agent/identity/agent.ts';
import { signEndpoint, SIGN_PATH, type SignerOptions } from '../../../agent/sidecar/sign-endpoint.ts';
import { loadFilter, type Cluster, type Filter, type HttpCallRequest } from '../../../host/index.ts';
import { EGRESS_ENTRY } from '../../../compiler/backend/egress.ts';
import { builtEntry } from '../../support/compiled.ts';
import { initCa, removeDir, TD } from '../../support/identity.ts';

export const CALLER = `spiffe://${TD}/ns/web/sa/frontend`;
export const CARD = `spiffe://${TD}/ns/payments/sa/card`;
export const LEDGER = `spiffe://${TD}/ns/payments/sa/ledger`;
export { SIGN_PATH };

export interface SigningAgent {
  ca: CaServer;
  agent: IdentityAgent;
  admin: AdminServer;
  /** `127.0.0.1:port` of the admin server. */
  authority: string;
  bundlePath: string;
  close(): Promise<void>;
}

/** CA, agent (SVID for CALLER) and its admin server with the signer registered. */
export async function startSigningAgent(signer: Partial<SignerOptions> = {}): Promise<SigningAgent> {
  const dir = await initCa();
  const ca = await startCaServer({ dir, port: 0, svidTtlMs: 60_000 });
  const { token } = await ca.ca.createToken(CALLER, 60_000);
  const bundlePath = path.join(dir, 'bundle.pem');
  const bundlePem = readFileSync(bundlePath, 'utf8');
  const agent = await startAgent({ caUrl: ca.url, bundlePem, token });
  const admin = await createAdmin({ agent, port: 0, plugins: [signEndpoint({ identity: agent, ...signer })] });
  const { port } = await admin.listen();
  return {
    ca,
    agent,
    admin,
    authority: `127.0.0.1:${port}`,
    bundlePath,
    async close() {
      agent.close();
      await admin.close();
      await ca.close();
      removeDir(path.dirname(dir));
    },
  };
}

/**
 * An Envoy cluster for proxy_http_call: sends the call over real HTTP to `origin`, with the
 * call's :method, :path and :authority. Records every call in `seen`.
 */
export function httpCluster(origin: string, seen: HttpCallRequest[] = []): { cluster: Cluster; close(): Promise<void> } {
  const dispatcher = new Agent({ connections: 16 });
  const cluster: Cluster = async (call) => {
    seen.push(call);
    const pseudo = Object.fromEntries(call.headers.filter(([k]) => k.startsWith(':')));
    const headers = Object.fromEntries(call.headers.filter(([k]) => !k.startsWith(':')));
    const res = await request(`${origin}${pseudo[':path']}`, {
      method: pseudo[':method'] as 'POST',
      headers: { ...headers, host: pseudo[':authority'] },
      body: Buffer.from(call.body),
      dispatcher,
    });
    const body = new Uint8Array(await res.body.arrayBuffer());
    const answer: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') answer[k] = v;
    return { status: res.statusCode, headers: answer, body };
  };
  return { cluster, close: () => dispatcher.destroy() };
}

/** The plugin configuration envoy/bootstrap.ts writes, for one signer and targets. */
export function egressConfiguration(authority: string, targets: Record<string, string> = { card: CARD, ledger: LEDGER }, extra: object = {}): string {
  return JSON.stringify({ signer_cluster: 'palisade_signer', signer_authority: authority, signer_path: SIGN_PATH, targets, ...extra });
}

/** The egress filter's bytes, built once per test run (its own suite also builds it anew: determinism). */
export const egressWasm = (): Promise<Uint8Array> => builtEntry(EGRESS_ENTRY);

export async function egressFilter(cluster: Cluster, configuration: string): Promise<Filter> {
  return loadFilter(await egressWasm(), { configuration, clusters: { palisade_signer: cluster }, name: 'palisade.egress' });
}

/** A plain HTTP server on 127.0.0.1:0 that answers with `handler` (a stand-in for a broken agent). */
export async function fakeAgent(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ origin: string; server: Server; close(): Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    origin: `http://127.0.0.1:${port}`,
    server,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

export const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
export const headerOf = (pairs: [string, string][], name: string): string[] => pairs.filter(([k]) => k === name).map(([, v]) => v);
