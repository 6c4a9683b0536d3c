/**
 * The control plane's part of `palisade demo`: a control plane joined to the demo's CA,
 * the example policies submitted through its HTTPS API with an admin token, every inbound
 * sidecar fed by it, and a live policy change under load that the sidecar picks up without
 * a failed request.
 */
import { readFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';
import type { CaServer } from '../ca/server.ts';
import { startAgent, type IdentityAgent } from '../agent/identity/agent.ts';
import type { Sidecar } from '../agent/sidecar/index.ts';
import { serverIdentity } from '../agent/sidecar/peer.ts';
import { ControlSubscriber } from '../agent/control/subscriber.ts';
import { ControlledSidecar } from '../agent/control/sidecar.ts';
import { defaultControlId } from '../agent/control/protocol.ts';
import { openStore } from '../store/open.ts';
import type { Store } from '../store/store.ts';
import { startControlServer, type ControlServer, type ControlServerOptions } from '../control/server.ts';
import { createToken } from '../control/tokens.ts';
import { CliError } from './errors.ts';

type Out = (line?: string) => void;
type Call = (service: string, path: string) => Promise<{ status: number }>;

export class DemoControl {
  private readonly closers: (() => Promise<unknown> | unknown)[] = [];

  private constructor(
    private readonly server: ControlServer,
    private readonly token: string,
    private readonly operator: Agent,
  ) {}

  /** Each inbound agent's subscription, by SPIFFE ID. */
  readonly subscribers = new Map<string, ControlSubscriber>();

  static async start(ca: CaServer, bundlePem: string, dir: string, trustDomain: string, plugins: ControlServerOptions['plugins'] = []): Promise<DemoControl> {
    await mkdir(dir, { recursive: true });
    const store: Store = await openStore(join(dir, 'control.db'));
    const controlId = defaultControlId(trustDomain);
    const identity: IdentityAgent = await startAgent({ caUrl: ca.url, bundlePem, token: (await ca.ca.createToken(controlId, 60_000)).token });
    const server = await startControlServer({ store, identity, plugins });
    const { token } = await createToken(store, 'admin', 'demo');
    const operator = new Agent({ connect: { ca: bundlePem, checkServerIdentity: (_h: string, c: PeerCertificate) => serverIdentity(c, controlId, trustDomain) } });
    const control = new DemoControl(server, token, operator);
    control.closers.push(() => operator.close(), () => server.close(), () => identity.close(), () => store.close());
    return control;
  }

  get url(): string {
    return this.server.url;
  }

  /** PUT through the operator API, as `curl` would; refusals end the demo with the diagnostics. */
  async submit(name: string, source: string): Promise<{ version: number; sha256: string; mode: string }> {
    const r = await this.api('PUT', `/v1/policies/${name}`, source);
    if (r.status !== 200) throw new CliError(`the control plane refused ${name}: ${r.json.error.message}`);
    return r.json;
  }

  /** An inbound sidecar fed by the control plane: resolves once the first filter has started it (`start` owns closing it). */
  async inbound(identity: IdentityAgent, start: (filter: { wasm: Uint8Array; source: string }) => Promise<Sidecar>): Promise<Sidecar> {
    const sidecar = new ControlledSidecar(start);
    const subscriber = new ControlSubscriber({ urls: [this.server.url], identity, apply: sidecar.apply });
    this.closers.push(() => subscriber.close());
    this.subscribers.set(identity.svid().spiffeId, subscriber);
    subscriber.start();
    return sidecar.ready;
  }

  /**
   * Ledger from dry-run to enforce, now also letting the frontend read balances: a load loop
   * of balance reads runs through the switch; a path dry-run forwarded is refused after it.
   */
  async liveChange(out: Out, call: Call, file: string): Promise<boolean> {
    out('\nlive policy change through the control plane API (ledger: dry-run → enforce, frontend may read balances)');
    const before = await call('ledger', '/accounts/7');
    const statuses = new Map<number, number>();
    let running = true;
    const loop = async () => {
      while (running) {
        const { status } = await call('ledger', '/balances/42').catch(() => ({ status: 0 }));
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    };
    const workers = Array.from({ length: 4 }, loop);
    const doc = JSON.parse(await readFile(file, 'utf8'));
    doc.mode = 'enforce';
    doc.rules.push({ id: 'frontend-reads-balances', effect: 'allow', from: [`${doc.service.replace(/\/ns\/.*$/, '')}/ns/web/sa/frontend`], to: [{ methods: ['GET'], paths: ['/balances/{id}'] }] });
    let version: { version: number; sha256: string };
    try {
      await new Promise((r) => setTimeout(r, 300));
      version = await this.submit('ledger', `${JSON.stringify(doc, null, 2)}\n`);
      out(`   PUT /v1/policies/ledger → version ${version.version}, sha256 ${version.sha256.slice(0, 16)}…`);
      const deadline = Date.now() + 10_000;
      while ((await this.rollout('ledger')).sha256 !== version.sha256 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      running = false;
      await Promise.all(workers);
    }
    const after = await call('ledger', '/accounts/7');
    const rollout = await this.rollout('ledger');
    const total = [...statuses.values()].reduce((a, b) => a + b, 0);
    const failed = total - (statuses.get(200) ?? 0);
    out(`   rollout: every ledger agent runs version ${rollout.version} (${rollout.converged ? 'converged' : 'NOT converged'})`);
    out(`   ${total} balance reads through the switch, ${failed} failed`);
    out(`   GET /accounts/7 from the frontend: ${before.status} before (dry-run forwards), ${after.status} after (enforced)`);
    return failed === 0 && rollout.converged && rollout.sha256 === version.sha256 && before.status === 200 && after.status === 403;
  }

  async close(): Promise<void> {
    for (const close of this.closers.reverse()) await close();
  }

  private async rollout(name: string): Promise<{ version: number; sha256: string | undefined; converged: boolean }> {
    const { json } = await this.api('GET', `/v1/rollout/${name}`);
    return { version: json.version, sha256: json.agents.every((a: { sha256: string }) => a.sha256 === json.sha256) ? json.sha256 : undefined, converged: json.converged };
  }

  private async api(method: 'GET' | 'PUT', path: string, body?: string): Promise<{ status: number; json: any }> {
    const r = await request(`${this.server.url}${path}`, {
      method, body, dispatcher: this.operator,
      headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    });
    return { status: r.statusCode, json: await r.body.json() };
  }
}
