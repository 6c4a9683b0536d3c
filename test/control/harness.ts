/**
 * A control plane on loopback for the control tests: a real CA (HTTPS), the control plane
 * holding its own SVID from a join token, operator tokens, and agents joining as services.
 */
import type { PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';
import { startCaServer, type CaServer } from '../../ca/server.ts';
import { startAgent, type IdentityAgent } from '../../agent/identity/agent.ts';
import { serverIdentity } from '../../agent/sidecar/peer.ts';
import { startControlServer, type ControlServer, type ControlServerOptions } from '../../control/server.ts';
import { createToken } from '../../control/tokens.ts';
import type { Store } from '../../store/store.ts';
import { Writable } from 'node:stream';
import { Pool } from 'undici';
import { ControlSubscriber } from '../../agent/control/subscriber.ts';
import { ControlledSidecar } from '../../agent/control/sidecar.ts';
import { startSidecar } from '../../agent/sidecar/index.ts';
import { createLogger } from '../../agent/sidecar/decision-log.ts';
import type { Report } from '../../agent/control/protocol.ts';
import { initCa, removeDir, TD } from '../support/identity.ts';
import { openStore } from '../../store/open.ts';
import { readFileSync } from 'node:fs';
import path from 'node:path';

export { TD };
export const CONTROL_ID = `spiffe://${TD}/palisade/control`;
export const CARD = `spiffe://${TD}/ns/payments/sa/card`;
export const LEDGER = `spiffe://${TD}/ns/payments/sa/ledger`;
export const FRONTEND = `spiffe://${TD}/ns/web/sa/frontend`;

/** A policy for `service` letting the frontend GET each of `paths`. */
export function policy(name: string, service: string, paths: string[], extra: Record<string, unknown> = {}): string {
  return `${JSON.stringify({
    palisade: 1,
    name,
    service,
    ...extra,
    rules: paths.map((p, i) => ({ id: `r${i}`, effect: 'allow', from: [FRONTEND], to: [{ methods: ['GET'], paths: [p] }] })),
  }, null, 2)}\n`;
}

export interface Plane {
  caServer: CaServer;
  bundlePem: string;
  store: Store;
  control: ControlServer;
  controlAgent: IdentityAgent;
  admin: string;
  viewer: string;
  /** An agent holding `spiffeId`'s SVID, closed with the plane. */
  join(spiffeId: string): Promise<IdentityAgent>;
  /** Another control-plane replica on the same store. */
  replica(): Promise<ControlServer>;
  api(method: string, path: string, options?: { token?: string | null; body?: string; headers?: Record<string, string>; url?: string }): Promise<{ status: number; json: any }>;
  close(): Promise<void>;
}

export async function startPlane(options: { store?: Store; plugins?: ControlServerOptions['plugins']; revocation?: ControlServerOptions['revocation'] } = {}): Promise<Plane> {
  const dir = path.dirname(await initCa());
  const caServer = await startCaServer({ dir: path.join(dir, 'ca'), port: 0 });
  const bundlePem = readFileSync(path.join(dir, 'ca', 'bundle.pem'), 'utf8');
  const agents: IdentityAgent[] = [];
  const join = async (spiffeId: string) => {
    const agent = await startAgent({ caUrl: caServer.url, bundlePem, token: (await caServer.ca.createToken(spiffeId, 60_000)).token });
    agents.push(agent);
    return agent;
  };
  const store = options.store ?? (await openStore(path.join(dir, 'control.db')));
  const controlAgent = await join(CONTROL_ID);
  const servers: ControlServer[] = [];
  const replica = async () => {
    const server = await startControlServer({ store, identity: controlAgent, plugins: options.plugins, revocation: options.revocation });
    servers.push(server);
    return server;
  };
  const control = await replica();
  const admin = (await createToken(store, 'admin', 'alice')).token;
  const viewer = (await createToken(store, 'viewer', 'victor')).token;
  // Operators verify the control plane as agents do: the bundle, and its SPIFFE ID.
  const dispatcher = new Agent({ connect: { ca: bundlePem, checkServerIdentity: (_h: string, cert: PeerCertificate) => serverIdentity(cert, CONTROL_ID, TD) } });
  return {
    caServer, bundlePem, store, control, controlAgent, admin, viewer, join, replica,
    async api(method, apiPath, { token = admin, body, headers = {}, url = control.url } = {}) {
      const response = await request(`${url}${apiPath}`, {
        method: method as 'GET',
        body,
        headers: { ...(token && { authorization: `Bearer ${token}` }), ...(body !== undefined && { 'content-type': 'application/json' }), ...headers },
        dispatcher,
      });
      const text = await response.body.text();
      return { status: response.statusCode, json: text ? JSON.parse(text) : undefined };
    },
    async close() {
      await dispatcher.close();
      for (const s of servers) await s.close();
      for (const a of agents) a.close();
      await caServer.close();
      if (!options.store) await store.close();
      removeDir(dir);
    },
  };
}

/**
 * Resolves with the first event of `emitter` that `match` accepts. The deadline only ends a
 * test that would hang: a report can follow a policy compile, which on a loaded machine (the
 * suite's other workers, other jobs) has taken longer than 10 s.
 */
function until<T extends unknown[]>(emitter: { on(e: string, f: (...a: T) => void): unknown; off(e: string, f: (...a: T) => void): unknown }, event: string, match: (...args: T) => boolean, timeoutMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`no matching ${event} within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (...args: T) => {
      if (!match(...args)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(args);
    };
    emitter.on(event, listener);
  });
}

/** The subscriber's next report that `match` accepts. */
export async function nextReport(subscriber: ControlSubscriber, match: (r: Report) => boolean = () => true, timeoutMs?: number): Promise<Report> {
  return (await until<[Report]>(subscriber as never, 'reported', match, timeoutMs))[0];
}

/** Resolves when the subscriber has a stream open (to `url`, if given). */
export async function connected(subscriber: ControlSubscriber, url?: string): Promise<void> {
  await until<[string]>(subscriber as never, 'connected', (u) => url === undefined || u === url);
}

/**
 * `replicas` agents of `service`, each with an embedded sidecar fed by the control plane in
 * front of `app`, and a frontend whose outbound sidecar routes `<name><i>` to replica i.
 */
export async function startServiceSidecars(plane: Plane, service: string, app: string, replicas = 1, urls = [plane.control.url]) {
  const log = createLogger(new Writable({ write: (_c, _e, done) => done() }));
  const instances: { subscriber: ControlSubscriber; sidecar: ControlledSidecar }[] = [];
  for (let i = 0; i < replicas; i++) {
    const identity = await plane.join(service);
    const sidecar = new ControlledSidecar((filter) => startSidecar({ identity, inbound: { app, filter }, logger: log }));
    const subscriber = new ControlSubscriber({ urls, identity, apply: sidecar.apply, retryMs: 50 });
    instances.push({ subscriber, sidecar });
    subscriber.start();
  }
  const inbound = await Promise.all(instances.map((c) => c.sidecar.ready));
  const frontend = await startSidecar({
    identity: await plane.join(FRONTEND),
    outbound: { routes: Object.fromEntries(inbound.map((s, i) => [`svc${i}`, { url: s.inbound!.url, spiffeId: service }])) },
    logger: log,
  });
  const pool = new Pool(frontend.outbound!.url, { connections: 16 });
  return {
    instances,
    /** GET `path` through the frontend's outbound sidecar to replica `i`: the status. */
    async call(i: number, callPath: string): Promise<number> {
      const r = await pool.request({ path: callPath, method: 'GET', headers: { host: `svc${i}` } });
      await r.body.dump();
      return r.statusCode;
    },
    async close() {
      await pool.close();
      await frontend.close();
      for (const c of instances) {
        await c.subscriber.close();
        await c.sidecar.close();
      }
    },
  };
}
