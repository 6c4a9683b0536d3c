/**
 * `palisade demo` (`npm start`): the whole perimeter on loopback with the real components.
 * It compiles the example policies, starts a CA and three services (frontend, card-service,
 * ledger), each with its own agent (joined with a one-time token) and embedded sidecar, runs
 * a scripted set of calls and prints what happened to each and why.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type { Command } from 'commander';
import { Agent, request } from 'undici';
import { untilSignal } from './process.ts';
import { CertificateAuthority } from '../ca/ca.ts';
import { startCaServer } from '../ca/server.ts';
import { startAgent, type IdentityAgent } from '../agent/identity/agent.ts';
import { createAdmin } from '../agent/identity/admin.ts';
import { startSidecar, type Sidecar } from '../agent/sidecar/index.ts';
import { registerFilterRoutes } from '../agent/sidecar/admin.ts';
import { createLogger } from '../agent/sidecar/decision-log.ts';
import { FINGERPRINT_HEADER, signFingerprint } from '../spiffe/fingerprint.ts';
import type { Routes } from '../agent/sidecar/outbound.ts';
import { DemoAudit } from './demo-audit.ts';
import { AUDIENCE, delegationOf, describeEdge, edgeScenarios, startDemoEdge, startDemoProvider } from './demo-edge.ts';
import { DemoControl } from './demo-control.ts';
import { DemoDashboard } from './demo-dashboard.ts';

const TD = 'bank.example';
const ID = {
  frontend: `spiffe://${TD}/ns/web/sa/frontend`,
  'card-service': `spiffe://${TD}/ns/payments/sa/card-service`,
  ledger: `spiffe://${TD}/ns/payments/sa/ledger`,
};
const ROOT = resolve(import.meta.dirname, '..');
const POLICIES = { 'card-service': 'examples/card-service/card-service.policy.json', ledger: 'examples/demo/ledger.policy.json' };

export function register(program: Command): void {
  program
    .command('demo')
    .description('run the zero-trust demo on loopback: CA, three services with agents and sidecars, scripted calls')
    .option('--keep', 'leave everything running for exploration (Ctrl-C stops it)')
    .action((opts: { keep?: boolean }) => runDemo(Boolean(opts.keep)));
}

type Decision = Record<string, unknown>;
const out = (line = '') => process.stdout.write(`${line}\n`);

async function runDemo(keep: boolean): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'palisade-demo-'));
  const closers: (() => Promise<unknown> | unknown)[] = [() => rm(dir, { recursive: true, force: true })];
  const decisions: Decision[] = [];
  let pane!: DemoDashboard;
  let live = false; // after the script, with --keep, decisions are printed as they happen
  const logger = createLogger(
    new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) {
          const entry = JSON.parse(line) as Decision;
          if (entry.msg !== 'decision' && entry.msg !== 'edge') {
            if (live && Number(entry.level) >= 40) out(`  ! ${entry.msg}${entry.reason ? `: ${entry.reason}` : ''}`);
            continue;
          }
          decisions.push(entry);
          if (live) out(`  ${describe(entry)}`);
        }
        done();
      },
    }),
  );
  try {
    out('Palisade demo: a zero-trust perimeter on loopback\n');

    const caDir = join(dir, 'ca');
    await CertificateAuthority.init(caDir, TD);
    const ca = await startCaServer({ dir: caDir, port: 0, svidTtlMs: 3_600_000 });
    closers.push(() => ca.close());
    const bundlePem = await readFile(join(caDir, 'bundle.pem'), 'utf8');
    pane = new DemoDashboard();
    out(`\nCA for spiffe://${TD} at ${ca.url}`);
    const audit = await DemoAudit.create(bundlePem);
    closers.push(() => audit.close());
    const control = await DemoControl.start(ca, bundlePem, join(dir, 'control'), TD, [pane.plugin]);
    closers.push(() => control.close(), () => pane.close());
    out(`control plane at ${control.url}; policies submitted through its API:`);
    for (const [name, file] of Object.entries(POLICIES)) {
      const v = await control.submit(name, await readFile(join(ROOT, file), 'utf8'));
      out(`  PUT /v1/policies/${name} (${file}) → version ${v.version}, ${v.mode}, sha256 ${v.sha256.slice(0, 16)}…`);
    }

    const idp = await startDemoProvider();
    closers.push(() => idp.close());
    out(`OpenID provider (oidc-provider) at ${idp.issuer}`);
    const agents: Record<string, IdentityAgent> = {};
    for (const [name, id] of Object.entries(ID)) {
      const { token } = await ca.ca.createToken(id, 60_000);
      agents[name] = await startAgent({ caUrl: ca.url, bundlePem, token });
      closers.push(() => agents[name].close());
    }

    const ledgerApp = await startApp((req, res) => json(res, 200, { ...delegationOf(req), id: req.url!.split('/')[2], balance: 1234.5, currency: 'EUR' }));
    const ledger = await sidecar(agents.ledger, { app: ledgerApp.url });
    let cardOutbound = '';
    const cardApp = await startApp(async (req, res) => cardService(req, res, cardOutbound));
    const card = await sidecar(agents['card-service'], { app: cardApp.url }, { ledger: route(ledger, 'ledger') });
    cardOutbound = card.outbound!.url;
    const frontend = await sidecar(agents.frontend, undefined, { 'card-service': route(card, 'card-service'), ledger: route(ledger, 'ledger') });
    closers.push(() => ledgerApp.close(), () => cardApp.close());
    // The edge runs in the frontend's agent: users' requests enter the mesh as the frontend.
    const edge = await startDemoEdge({ dir, provider: idp, agent: agents.frontend, bundlePem, logger, routes: { '/cards': route(card, 'card-service'), '/balances': route(ledger, 'ledger') } });
    closers.push(() => edge.close());

    // Inbound sidecars start with the filter the control plane sends them.
    async function sidecar(agent: IdentityAgent, inbound?: { app: string }, routes?: Routes): Promise<Sidecar> {
      const start = async (filter?: { wasm: Uint8Array; source: string }) => {
        const s = await startSidecar({
          identity: agent,
          inbound: inbound && filter && { ...inbound, filter, onDecision: (record, entry) => pane.record(record, entry) },
          outbound: routes && { routes },
          audit: inbound && audit.for(agent.svid().spiffeId.split('/').at(-1)!, agent, logger),
          identityContext: { issuer: idp.issuer, audience: AUDIENCE, jwks: `${idp.issuer}/jwks` },
          identityIssuers: [ID.frontend, ID['card-service']],
          logger,
          registry: agent.metrics,
        });
        closers.push(() => s.close());
        return s;
      };
      const id = agent.svid().spiffeId;
      const s = inbound ? await control.inbound(agent, start) : await start();
      pane.attach(control.url, agent, control.subscribers.get(id), audit.log(id.split('/').at(-1)!));
      return s;
    }
    for (const [name, s] of [['frontend', frontend], ['card-service', card], ['ledger', ledger]] as const) {
      const sides = [s.inbound && `inbound ${s.inbound.url}`, s.outbound && `outbound ${s.outbound.url}`].filter(Boolean).join(', ');
      out(`  ${name.padEnd(13)} ${agents[name].svid().spiffeId.padEnd(48)} ${sides}`);
    }
    out(`  edge          run by the frontend's agent                      ${edge.listener.url}`);

    // The script plays the frontend application: plain HTTP to its own outbound sidecar.
    const viaFrontend = async (service: string, path: string, token?: string) => {
      const traceId = randomBytes(16).toString('hex');
      const headers: Record<string, string> = { host: service, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` };
      if (token) headers.authorization = `Bearer ${token}`;
      const res = await request(`${frontend.outbound!.url}${path}`, { headers });
      return { status: res.statusCode, body: await res.body.text(), traceId };
    };
    const alice = () => idp.login('alice', ['list_cards']);
    const scenarios: { title: string; expect: number; run: () => Promise<{ status: number; body: string; traceId?: string }>; why: string }[] = [
      ...edgeScenarios(edge, idp),
      {
        title: 'no client certificate: a caller outside the mesh calls card-service directly',
        expect: 401,
        run: async () => direct(card.inbound!.url, '/cards', bundlePem, null),
        why: 'the inbound sidecar requires an SVID from the trust bundle before anything else',
      },
      {
        title: 'replayed fingerprint: a captured request sent again on a valid mTLS connection',
        expect: 401,
        run: async () => {
          const token = await alice();
          const svid = agents.frontend.svid();
          const fp = await signFingerprint(svid.privateKey, { caller: svid.spiffeId, target: ID['card-service'], method: 'GET', path: '/cards', identityToken: token });
          const headers = { authorization: `Bearer ${token}`, [FINGERPRINT_HEADER]: fp };
          const first = await direct(card.inbound!.url, '/cards', bundlePem, svid, headers);
          if (first.status !== 200) return first;
          return direct(card.inbound!.url, '/cards', bundlePem, svid, headers);
        },
        why: 'the first copy was accepted; the jti was remembered, so the second is refused',
      },
      {
        title: 'dry-run: frontend reads a balance from the ledger directly',
        expect: 200,
        run: async () => viaFrontend('ledger', '/balances/42', await alice()),
        why: 'ledger\'s policy would deny (only card-service may), but it is in dry-run: forwarded and logged',
      },
    ];

    out('\nscripted calls');
    let failures = 0;
    for (const [i, s] of scenarios.entries()) {
      const seen = decisions.length;
      const result = await s.run();
      await new Promise((r) => setTimeout(r, 20)); // decision lines are written when responses close
      const ok = result.status === s.expect;
      if (!ok) failures++;
      out(`\n${i + 1}. ${s.title}`);
      out(`   → ${result.status}${ok ? '' : ` (expected ${s.expect})`}  ${summary(result.body)}`);
      for (const d of decisions.slice(seen)) out(`   ${describe(d)}`);
      out(`   why: ${s.why}`);
    }
    out(`\n${scenarios.length - failures} of ${scenarios.length} scenarios behaved as expected`);
    if (failures) process.exitCode = 1;
    if (!(await control.liveChange(out, viaFrontend, join(ROOT, POLICIES.ledger)))) process.exitCode = 1;
    await audit.report(out);

    if (keep) {
      const admin = await createAdmin({ agent: agents['card-service'], plugins: [async (app) => registerFilterRoutes(app, card.filters!)] });
      const { url } = await admin.listen();
      closers.push(() => admin.close());
      const token = await alice();
      out('\nstill running (Ctrl-C stops everything). Try, as a user at the edge, then as the frontend application:');
      out(`  curl -k -H 'authorization: Bearer ${token}' ${edge.listener.url}/cards/42   # -k: the edge's certificate is its SVID (no DNS name)`);
      out(`  curl -H 'host: card-service' -H 'authorization: Bearer ${token}' ${frontend.outbound!.url}/cards`);
      out(`  curl -H 'host: ledger' ${frontend.outbound!.url}/balances/7`);
      out(`card-service's agent admin: ${url}/v1/filter (PUT a compiled filter to hot-reload, with -H 'authorization: Bearer ${admin.token}'), ${url}/metrics`);
      out(`Security Pane: ${control.url}/dashboard/ with the viewer token ${await pane.viewerToken()}`);
      out(`  (the certificate names only the control plane's SPIFFE ID: the browser asks to accept it; an admin token: palisade control token create --dir ${join(dir, 'control')} --role admin)`);
      out('decisions as they happen:');
      live = true;
      await untilSignal();
    }
  } finally {
    for (const close of closers.reverse()) await close();
  }
}

/** The card service application: cards, PII, and a balance fetched from the ledger through its sidecar. */
async function cardService(req: IncomingMessage, res: ServerResponse, outbound: string): Promise<void> {
  const user = req.headers['x-user-id'] ?? null;
  const [, , id, sub] = (req.url ?? '/').split('?')[0].split('/');
  if (!id) return json(res, 200, { user, cards: [{ id: '42', last4: '4242' }, { id: '77', last4: '0077' }] });
  if (sub === 'pii') return json(res, 200, { id, holder: 'Alice Example', pan: '4000 0000 0000 4242' });
  const headers: Record<string, string> = { host: 'ledger', traceparent: String(req.headers.traceparent ?? '') };
  if (req.headers.authorization) headers.authorization = req.headers.authorization;
  const balance = await request(`${outbound}/balances/${id}`, { headers });
  json(res, 200, { id, last4: '4242', balance: await balance.body.json() });
}

function route(s: Sidecar, name: keyof typeof ID) {
  return { url: s.inbound!.url, spiffeId: ID[name] };
}

async function startApp(handler: (req: IncomingMessage, res: ServerResponse) => unknown) {
  const server = createServer((req, res) => {
    Promise.resolve(handler(req, res)).catch(() => json(res, 500, { error: 'app failed' }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((r) => {
      server.closeAllConnections();
      server.close(r);
    }),
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** A direct HTTPS call to an inbound sidecar, with a client SVID or none. */
async function direct(base: string, path: string, ca: string, svid: { chainPem: string; privateKey: import('node:crypto').KeyObject } | null, headers: Record<string, string> = {}) {
  const dispatcher = new Agent({
    connect: { ca, cert: svid?.chainPem, key: svid?.privateKey.export({ format: 'pem', type: 'pkcs8' }), checkServerIdentity: () => undefined },
  });
  try {
    const res = await request(`${base}${path}`, { headers, dispatcher });
    return { status: res.statusCode, body: await res.body.text() };
  } finally {
    await dispatcher.close();
  }
}

function describe(d: Decision): string {
  if (d.msg === 'edge') return describeEdge(d);
  const who = String(d.caller ?? 'no identity').replace(`spiffe://${TD}/`, '');
  const target = String(d.target).replace(`spiffe://${TD}/`, '');
  const rule = d.rule ? ` rule ${d.rule}` : '';
  const mode = d.mode === 'dry-run' ? ' (dry-run: not enforced)' : '';
  return `decision at ${target}: ${d.decision}${rule}${mode}, ${d.method} ${d.path} from ${who} → ${d.status} [${d.reason}] trace ${String(d.trace_id).slice(0, 8)}… ${d.latency_ms} ms`;
}

function summary(body: string): string {
  return body.length > 110 ? `${body.slice(0, 107)}…` : body;
}
