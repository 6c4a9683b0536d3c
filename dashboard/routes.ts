/**
 * The Security Pane (docs/dashboard.md) as a fastify plugin on the control plane's server:
 *
 * - `/dashboard/…`: the page, plain ES modules and a stylesheet from dashboard/static/, under a
 *   Content-Security-Policy that allows only this origin's scripts and styles (none inline).
 *   The files carry no data, so they need no token; everything they show comes from:
 * - `/v1/dashboard/…`: read-only JSON for any operator token (viewers included), every list
 *   aggregated or paginated so 500 services and 50,000 decisions stay small answers, and
 *   `/v1/dashboard/events`, server-sent events that tell the page what changed.
 * - `POST /v1/agent/decisions`: agents' decision batches (agent/control/decisions.ts), kept
 *   only for the sending agent's own service.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify';
import type { Store } from '../store/store.ts';
import { AGENT_INSTANCE_HEADER } from '../agent/control/protocol.ts';
import { BATCH_MAX, DECISIONS_PATH, type DecisionBatch } from '../agent/control/decisions.ts';
import type { DecisionRecord } from '../agent/sidecar/decision-log.ts';
import { ControlError } from '../control/errors.ts';
import { CHANGES_CHANNEL, type PolicyRegistry } from '../control/policies.ts';
import { Rollout } from '../control/rollout.ts';
import { analyze } from '../compiler/frontend/index.ts';
import { diffPolicies } from '../diff/index.ts';
import { DecisionWindow, type DecisionFilter } from './window.ts';
import { Instances } from './instances.ts';
import { CheckpointVerifier } from './audit-status.ts';
import { checkInclusion, PENDING } from './inclusion.ts';
import { LiveEvents } from './events.ts';

export interface DashboardOptions {
  store: Store;
  policies: PolicyRegistry;
  /** The trust bundle (PEM): agents' audit checkpoints must chain to it. */
  bundlePem: string;
  /** Decisions kept per service (default 10,000) and services tracked (default 1,000). */
  perService?: number;
  services?: number;
  now?: () => number;
}

export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const STATIC = join(import.meta.dirname, 'static');
const ASSETS: Record<string, string> = {
  '': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'views.js': 'text/javascript; charset=utf-8',
  'graph.js': 'text/javascript; charset=utf-8',
  'dom.js': 'text/javascript; charset=utf-8',
  'index.html': 'text/html; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};
const SERVICES_PAGE_MAX = 100;
const GRAPH_EDGES_MAX = 500;

export function dashboard(options: DashboardOptions): FastifyPluginAsync {
  return async function plugin(app: FastifyInstance): Promise<void> {
    const { store, policies } = options;
    const now = options.now ?? Date.now;
    const window = new DecisionWindow(options.perService, options.services, now);
    const instances = new Instances(options.services ?? 1_000, new CheckpointVerifier(options.bundlePem, now), now);
    const rollout = new Rollout(store, now);
    const events = await LiveEvents.start(store, CHANGES_CHANNEL);
    app.addHook('onClose', () => events.close());

    app.addHook('onSend', async (_request, reply) => {
      reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
      reply.header('x-content-type-options', 'nosniff');
      reply.header('referrer-policy', 'no-referrer');
    });

    const asset = async (file: string, reply: FastifyReply) => {
      const type = ASSETS[file];
      if (type === undefined) throw new ControlError(404, 'not_found', `no file ${file}`);
      return reply.type(type).header('cache-control', 'no-cache').send(await readFile(join(STATIC, file || 'index.html')));
    };
    app.get('/dashboard', async (_request, reply) => reply.redirect('/dashboard/'));
    app.get('/dashboard/', async (_request, reply) => asset('', reply));
    app.get<{ Params: { file: string } }>('/dashboard/:file', async (request, reply) => asset(request.params.file, reply));

    app.post(DECISIONS_PATH, async (request, reply) => {
      const service = request.agentId!;
      const batch = parseBatch(request.body);
      const instance = String(request.headers[AGENT_INSTANCE_HEADER] ?? '').slice(0, 100) || 'unnamed';
      const cert = (request.raw.socket as TLSSocket).getPeerX509Certificate()!;
      instances.seen(service, instance, cert, batch);
      let added = 0;
      for (const d of batch.decisions) {
        // An agent speaks only for its own inbound side: decisions about others are ignored.
        if (d.target !== service) continue;
        if (window.add(summaryOf(d, instance, batch.policy))) added++;
      }
      // After the batch's checkpoint was verified (instances.seen): proofs are checked against it.
      const head = instances.checkpoint(service, instance);
      for (const proof of batch.proofs) {
        const d = window.audited(service, instance, proof.index);
        if (d?.audit_inclusion?.status === 'pending') d.audit_inclusion = checkInclusion(d, proof, head);
      }
      events.decisions(added);
      return reply.status(204).send();
    });

    app.get<{ Querystring: Record<string, string> }>('/v1/dashboard/services', async (request) => {
      // Services with a policy, and services whose agents report without one (callers only, or unprotected).
      const protectedBy = new Map((await policies.list()).filter((p) => p.kind === 'service').map((p) => [p.level, p]));
      const all = [...new Set([...protectedBy.keys(), ...instances.services()])].sort();
      const { offset, limit } = page(request.query, SERVICES_PAGE_MAX);
      const services = await Promise.all(all.slice(offset, offset + limit).map(async (spiffeId) => {
        const p = protectedBy.get(spiffeId);
        return {
          spiffe_id: spiffeId,
          policy: p ? { name: p.name, version: p.version, sha256: p.sha256, mode: p.mode, changed_at: p.changed_at, changed_by: p.changed_by.name } : null,
          rollout: p ? await rollout.of(p.name) : [],
          instances: instances.of(spiffeId),
        };
      }));
      return { total: all.length, offset, services };
    });

    app.get<{ Querystring: Record<string, string> }>('/v1/dashboard/graph', async (request) => {
      const seconds = integer(request.query.window, 300, 1, 86_400, 'window');
      const edges = window.edges(now() - seconds * 1000);
      // The busiest edges, denials first: what an operator looks for when the graph is large.
      edges.sort((a, b) => (b.denied + b.dry_run_denied) - (a.denied + a.dry_run_denied) || (b.allowed - a.allowed));
      const shown = edges.slice(0, GRAPH_EDGES_MAX);
      const nodes = [...new Set(shown.flatMap((e) => [e.caller, e.target]))];
      return { window_seconds: seconds, total_edges: edges.length, nodes, edges: shown };
    });

    app.get<{ Querystring: Record<string, string> }>('/v1/dashboard/decisions', async (request) => {
      const q = request.query;
      const filter: DecisionFilter = {};
      for (const key of ['service', 'caller', 'user', 'decision', 'rule'] as const) if (q[key]) filter[key] = String(q[key]).slice(0, 300);
      if (q.since) filter.since = integer(q.since, 0, 0, Number.MAX_SAFE_INTEGER, 'since');
      if (q.before) filter.before = integer(q.before, 0, 1, Number.MAX_SAFE_INTEGER, 'before');
      const decisions = window.list(filter, integer(q.limit, 50, 1, 200, 'limit'));
      return { in_window: window.size, dropped: window.dropped, decisions, next_before: decisions.at(-1)?.id ?? null };
    });

    app.get<{ Params: { id: string } }>('/v1/dashboard/decisions/:id', async (request) => {
      const d = window.get(integer(request.params.id, 0, 1, Number.MAX_SAFE_INTEGER, 'id'));
      if (!d) throw new ControlError(404, 'not_found', 'no such decision in the window (it may have aged out)');
      return d;
    });

    app.get<{ Params: { name: string }; Querystring: Record<string, string> }>('/v1/dashboard/policies/:name/diff', async (request) => {
      const { name } = request.params;
      const from = integer(request.query.from, 0, 1, 1e9, 'from'), to = integer(request.query.to, 0, 1, 1e9, 'to');
      const [a, b] = await Promise.all([policies.version(name, from), policies.version(name, to)]);
      if (a.kind !== 'service') throw new ControlError(400, 'bad_request', `${name} is a layer: diff compares service policies`);
      const [checkedA, checkedB] = [a, b].map((v) => analyze(`${name}.policy.json`, v.source).policy);
      if (!checkedA || !checkedB) throw new ControlError(500, 'internal_error', 'a stored version no longer checks');
      return { name, from, to, regions: diffPolicies(checkedA, checkedB).slice(0, 200) };
    });

    app.get('/v1/dashboard/events', async (request, reply) => {
      events.subscribe(request, reply);
    });
  };
}

function summaryOf(d: DecisionRecord, instance: string, policy: DecisionBatch['policy']) {
  // The sidecar refuses a missing or bad fingerprint before the filter, with a fingerprint_* reason;
  // a decision the filter made (it has a mode) from a verified caller passed the fingerprint check.
  const fingerprint = d.reason.startsWith('fingerprint') ? 'refused' as const : d.caller && d.mode !== null ? 'verified' as const : 'absent' as const;
  return {
    trace_id: d.trace_id, request_id: d.request_id, caller: d.caller, target: d.target, instance,
    method: d.method, path: d.path, decision: d.decision, rule: d.rule, mode: d.mode, status: d.status, reason: d.reason,
    user: d.user, client_id: d.client_id, fingerprint, audit_index: d.audit_index, policy, audit_inclusion: d.audit_index === null ? null : PENDING,
  };
}

const text = (v: unknown, max: number) => typeof v === 'string' && v.length <= max;

/** A batch as the agent sends it; anything else is one 400. Strings are bounded so one agent cannot fill memory. */
function parseBatch(body: unknown): DecisionBatch {
  let b: any;
  try {
    b = JSON.parse(String(body));
  } catch {
    throw new ControlError(400, 'invalid_json', 'body is not JSON');
  }
  const okRecord = (d: any) => d && text(d.target, 300) && (d.caller === null || text(d.caller, 300)) && text(d.method, 20) && text(d.path, 2048)
    && text(d.decision, 30) && (d.rule === null || text(d.rule, 200)) && (d.mode === null || text(d.mode, 20)) && Number.isInteger(d.status)
    && text(d.reason, 300) && text(d.trace_id, 64) && text(d.request_id, 200)
    && (d.user === null || text(d.user, 300)) && (d.client_id === null || text(d.client_id, 300))
    && (d.audit_index === null || (Number.isSafeInteger(d.audit_index) && d.audit_index >= 0));
  // A tree of 2^63 leaves has audit paths of at most 63 hashes.
  const okProof = (p: any) => p && Number.isSafeInteger(p.index) && p.index >= 0 && text(p.entry, 65_536)
    && Array.isArray(p.proof) && p.proof.length <= 63 && p.proof.every((h: unknown) => text(h, 44));
  const ok = b && typeof b === 'object' && b.renewal && (b.renewal.status === 'ok' || b.renewal.status === 'failed')
    && Number.isInteger(b.renewal.consecutive_failures) && (b.renewal.last_error === null || text(b.renewal.last_error, 1000))
    && (b.policy === null || (b.policy && text(b.policy.name, 63) && Number.isInteger(b.policy.version) && text(b.policy.sha256, 64)))
    && (b.audit === null || (b.audit && text(b.audit.checkpoint, 4096) && text(b.audit.chain, 16_384)))
    && Number.isInteger(b.dropped) && Array.isArray(b.decisions) && b.decisions.length <= BATCH_MAX && b.decisions.every(okRecord)
    && Array.isArray(b.proofs) && b.proofs.length <= BATCH_MAX && b.proofs.every(okProof);
  if (!ok) throw new ControlError(400, 'bad_request', `a decision batch is { renewal, policy, dropped, audit, decisions: [≤ ${BATCH_MAX} decision records], proofs: [≤ ${BATCH_MAX} entry proofs] } (docs/dashboard.md)`);
  return b as DecisionBatch;
}

function integer(value: string | undefined, fallback: number, min: number, max: number, name: string): number {
  if (value === undefined || value === '') {
    if (fallback < min) throw new ControlError(400, 'bad_request', `${name} is required`);
    return fallback;
  }
  const n = Number(value);
  if (!/^\d{1,16}$/.test(value) || n < min || n > max) throw new ControlError(400, 'bad_request', `${name} must be an integer from ${min} to ${max}`);
  return n;
}

function page(q: Record<string, string>, max: number): { offset: number; limit: number } {
  return { offset: integer(q.offset, 0, 0, 1e9, 'offset'), limit: integer(q.limit, max, 1, max, 'limit') };
}
