/**
 * TEMPORARY wiring stand-in until the compiler lands: "wasm" bytes that are a JSON rule
 * list, evaluated in JS behind the host's Filter shape. To be replaced by a compiled policy
 * in the strict host.
 */
import type { FilterLoader } from '../../agent/sidecar/filter-slot.ts';
import type { Outcome, Pair } from '../../agent/host/filter.ts';

interface StandinRule { from?: string[]; methods?: string[]; prefix?: string; scope?: string; inject?: Record<string, 'user.sub'> }

export const standinPolicy = (rules: StandinRule[], mode = 'enforce') => Buffer.from(JSON.stringify({ mode, rules }));

export const loadStandin: FilterLoader = async (wasm) => {
  const policy = JSON.parse(Buffer.from(wasm).toString()) as { mode: 'enforce' | 'dry-run'; rules: StandinRule[] };
  return {
    async close() {},
    async handleRequest(req, options = {}): Promise<Outcome> {
      const principal = req.source?.principal;
      const jwt = req.metadata?.['envoy.filters.http.jwt_authn'];
      const user = jwt?.user as Record<string, string> | undefined;
      const headers = Object.entries(req.headers as Record<string, string>) as Pair[];
      const log = (decision: string, status: number) => [{ level: 'info' as const, contextId: 2, message: `palisade.decision ${JSON.stringify({ decision, status, rule: null, mode: policy.mode, reason: '' })}` }];
      const reply = (status: number, error: string, decision: string): Outcome => ({
        kind: 'reply', status, headers: [['content-type', 'application/json']], details: 'local', upstreamRequest: null,
        body: Buffer.from(JSON.stringify({ error, request_id: (req.headers as Record<string, string>)['x-request-id'] })), logs: log(decision, status),
      });
      if (!principal || !jwt?.fingerprint) return reply(401, 'unauthenticated', 'unauthenticated');
      const rule = policy.rules.find((r) =>
        (!r.from || r.from.includes(principal)) && (!r.methods || r.methods.includes(req.method)) &&
        (!r.prefix || req.path.startsWith(r.prefix)) && (!r.scope || (user?.scope ?? '').split(' ').includes(r.scope)));
      if (!rule && policy.mode === 'enforce') return reply(403, 'forbidden', 'deny');
      const injectable = new Set(policy.rules.flatMap((r) => Object.keys(r.inject ?? {})));
      const forwarded: Pair[] = [[':method', req.method], [':path', req.path], [':authority', req.authority], ...headers.filter(([h]) => !injectable.has(h))];
      for (const [h, v] of Object.entries(rule?.inject ?? {})) if (v === 'user.sub' && user) forwarded.push([h, user.sub]);
      const up = await options.upstream!({ headers: forwarded, body: new Uint8Array() });
      return {
        kind: 'forward', status: up.status, headers: (up.headers ?? []) as Pair[], body: Buffer.from(up.body ?? ''), details: 'via_upstream',
        upstreamRequest: { headers: forwarded, body: new Uint8Array() }, logs: log(rule ? 'allow' : 'deny', 200),
      };
    },
  };
};
