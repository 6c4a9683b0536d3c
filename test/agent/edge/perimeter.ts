/**
 * A whole perimeter on loopback for the edge tests: a real CA, agents for the edge, the card
 * service and the ledger, the local OpenID provider, the card application (which calls the
 * ledger through its outbound sidecar, passing on the authorization it received), the
 * ledger application, and the edge itself; plus a "recorder": a service with the card
 * service's SVID that keeps exactly what the edge sent it; and, when asked, a gRPC service
 * (a real @grpc/grpc-js server behind its sidecar, spoken to over h2c) under `/demo.Cards`.
 */
import { createServer as createHttpsServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority } from '../../../ca/ca.ts';
import { startCaServer, type CaServer } from '../../../ca/server.ts';
import { startAgent, type IdentityAgent } from '../../../agent/identity/agent.ts';
import { startSidecar, type Sidecar } from '../../../agent/sidecar/index.ts';
import { tlsMaterial } from '../../../agent/sidecar/tls.ts';
import { prepareEdge, type EdgeConfig } from '../../../agent/edge/index.ts';
import type { EdgeListener } from '../../../agent/edge/server.ts';
import { startLocalProvider, type LocalProvider } from '../../../testing/identity-provider.ts';
import { compiledFile } from '../../support/compiled.ts';
import { captureLog, startEcho } from '../sidecar/harness.ts';

export const TD = 'bank.example';
export const EDGE = `spiffe://${TD}/ns/web/sa/edge`;
export const CARD = `spiffe://${TD}/ns/payments/sa/card-service`;
export const LEDGER = `spiffe://${TD}/ns/payments/sa/ledger`;
export const CARDS_GRPC = `spiffe://${TD}/ns/payments/sa/cards-grpc`;
export const AUDIENCE = 'bank-apis';

const fixture = (name: string) => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
}

export interface Perimeter {
  ca: CaServer;
  bundle: string;
  provider: LocalProvider;
  agents: { edge: IdentityAgent; card: IdentityAgent; ledger: IdentityAgent };
  card: Sidecar;
  ledger: Sidecar;
  edge: EdgeListener;
  /** What reached the recorder (route `/cards/recorded`, longer than `/cards`). */
  recorded: Recorded[];
  /** The gRPC service's calls as it received them (method path, authorization), when started with `grpc`. */
  grpcCalls: { path: string; authorization: string | undefined }[];
  log: ReturnType<typeof captureLog>;
  /** A request to the edge, as a client outside the mesh (trusting the CA bundle). */
  call(path: string, headers?: Record<string, string>, method?: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }>;
  close(): Promise<void>;
}

export async function startPerimeter(edgeConfig: Partial<EdgeConfig> = {}, opts: { grpc?: boolean } = {}): Promise<Perimeter> {
  const dir = await mkdtemp(join(tmpdir(), 'palisade-edge-'));
  const closers: (() => Promise<unknown> | unknown)[] = [() => rm(dir, { recursive: true, force: true })];
  const close = async () => {
    for (const c of closers.reverse()) await c();
  };
  try {
    const log = captureLog();
    await CertificateAuthority.init(join(dir, 'ca'), TD);
    const ca = await startCaServer({ dir: join(dir, 'ca'), port: 0 });
    closers.push(() => ca.close());
    const bundle = await readFile(join(dir, 'ca', 'bundle.pem'), 'utf8');
    const agent = async (id: string) => {
      const a = await startAgent({ caUrl: ca.url, bundlePem: bundle, token: (await ca.ca.createToken(id, 60_000)).token });
      closers.push(() => a.close());
      return a;
    };
    const agents = { edge: await agent(EDGE), card: await agent(CARD), ledger: await agent(LEDGER) };
    const provider = await startLocalProvider({
      audience: AUDIENCE,
      scopes: ['list_cards', 'profile'],
      users: { alice: { scopes: ['list_cards', 'profile'], claims: { acr: 'mfa', consent: ['pii'] } }, bob: { scopes: ['profile'] } },
    });
    closers.push(() => provider.close());

    const sidecar = async (identity: IdentityAgent, policy: string, app: string, issuers: string[], routes?: Record<string, { url: string; spiffeId: string }>, appProtocol?: 'h2c') => {
      const file = join(dir, `${policy}.wasm`);
      await writeFile(file, (await compiledFile(fixture(`${policy}.policy.json`))).wasm);
      const s = await startSidecar({
        identity,
        inbound: { app, appProtocol, filterFile: file, watch: false },
        outbound: routes && { routes },
        identityIssuers: issuers,
        revocation: { refreshMs: 250 },
        logger: log.logger,
      });
      closers.push(() => s.close());
      return s;
    };
    const ledgerApp = await app((req, res) => json(res, 200, { balance: 1234.5, authorization: req.headers.authorization ?? null }));
    closers.push(() => ledgerApp.close());
    const ledger = await sidecar(agents.ledger, 'ledger', ledgerApp.url, [CARD]);
    let cardOutbound = '';
    // The card application: /cards/{id} asks the ledger, passing on the authorization it received.
    const cardApp = await app(async (req, res) => {
      const id = /^\/cards\/([^/?]+)/.exec(req.url ?? '')?.[1];
      if (!id) return json(res, 200, { cards: ['42'], authorization: req.headers.authorization ?? null });
      const headers: Record<string, string> = { host: 'ledger' };
      if (req.headers.authorization) headers.authorization = req.headers.authorization;
      const balance = await request(`${cardOutbound}/balances/${id}`, { headers });
      json(res, balance.statusCode === 200 ? 200 : 502, { id, ledger: { status: balance.statusCode, body: await balance.body.json() } });
    });
    closers.push(() => cardApp.close());
    const card = await sidecar(agents.card, 'card', cardApp.url, [EDGE], { ledger: { url: ledger.inbound!.url, spiffeId: LEDGER } });
    cardOutbound = card.outbound!.url;

    const recorded: Recorded[] = [];
    const recorder = createHttpsServer({ ...tlsMaterial(agents.card), requestCert: true }, (req, res) => {
      recorded.push({ method: req.method!, url: req.url!, headers: req.headers });
      json(res, 200, { recorded: true });
    });
    await new Promise<void>((r) => recorder.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => {
      recorder.closeAllConnections();
      recorder.close(r);
    }));

    const grpcCalls: Perimeter['grpcCalls'] = [];
    const grpcRoute: Record<string, { url: string; spiffeId: string }> = {};
    if (opts.grpc) {
      const server = await grpcCards(grpcCalls);
      closers.push(() => server.forceShutdown());
      const cards = await sidecar(await agent(CARDS_GRPC), 'cards-grpc', `http://127.0.0.1:${server.port}`, [EDGE], undefined, 'h2c');
      grpcRoute['/demo.Cards'] = { url: cards.inbound!.url, spiffeId: CARDS_GRPC };
    }

    const routesFile = join(dir, 'edge-routes.json');
    await writeFile(routesFile, JSON.stringify({
      '/cards': { url: card.inbound!.url, spiffeId: CARD },
      '/cards/recorded': { url: `https://127.0.0.1:${(recorder.address() as AddressInfo).port}`, spiffeId: CARD },
      ...grpcRoute,
    }));
    const prepared = await prepareEdge({ host: '127.0.0.1', port: 0, routesFile, issuer: provider.issuer, audience: AUDIENCE, typ: 'at+jwt', client: provider.edgeClient, ...edgeConfig });
    const edge = await prepared.start(agents.edge, log.logger);
    closers.push(() => edge.close());

    const client = new Agent({ connect: { ca: bundle, checkServerIdentity: () => undefined } });
    closers.push(() => client.close());
    return {
      ca, bundle, provider, agents, card, ledger, edge, recorded, grpcCalls, log, close,
      async call(path, headers = {}, method = 'GET') {
        // As sent: a URL would resolve dot segments before the edge sees them.
        const res = await client.request({ origin: edge.url, path, method: method as 'GET', headers });
        return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
      },
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The gRPC application: `/demo.Cards/Get` (unary, with a trailer) and `/demo.Cards/List` (server streaming), raw bytes. */
async function grpcCards(calls: Perimeter['grpcCalls']): Promise<grpc.Server & { port: number }> {
  const server = new grpc.Server();
  const raw = (b: Buffer) => b;
  const note = (path: string, metadata: grpc.Metadata) => calls.push({ path, authorization: metadata.get('authorization')[0] as string | undefined });
  server.register('/demo.Cards/Get', (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
    note('/demo.Cards/Get', call.metadata);
    const trailer = new grpc.Metadata();
    trailer.set('x-card-trailer', 'served');
    done(null, Buffer.from(`card ${call.request}`), trailer);
  }, raw, raw, 'unary');
  server.register('/demo.Cards/List', (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    note('/demo.Cards/List', call.metadata);
    for (let i = 0; i < 3; i++) call.write(Buffer.from(`card ${i}`));
    call.end();
  }, raw, raw, 'serverStream');
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return Object.assign(server, { port });
}

/** An application: the sidecar tests' echo server answering with `handler`. */
async function app(handler: (req: IncomingMessage, res: ServerResponse) => unknown) {
  const echo = await startEcho();
  echo.behave = (req, res) => void Promise.resolve(handler(req, res)).catch((err) => json(res, 500, { error: (err as Error).message }));
  return echo;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** The decision lines of one service (by its SPIFFE ID), in order. */
export function decisionsAt(p: Perimeter, target: string): Record<string, unknown>[] {
  return p.log.lines.filter((l) => l.msg === 'decision' && l.target === target);
}
