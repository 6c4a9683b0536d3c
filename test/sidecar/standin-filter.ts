/**
 * TEMPORARY wiring stand-in until agent/host and the compiler land: "wasm" bytes that are a
 * JSON rule list, evaluated in JS. To be replaced by the strict host and a compiled policy.
 */
import type { FilterLoader, FilterOutcome } from '../../agent/sidecar/filter-slot.ts';

interface StandinRule { from?: string[]; methods?: string[]; prefix?: string; scope?: string; inject?: Record<string, 'user.sub'> }

export const standinPolicy = (rules: StandinRule[], mode = 'enforce') => Buffer.from(JSON.stringify({ mode, rules }));

export const loadStandin: FilterLoader = async (wasm) => {
  const policy = JSON.parse(Buffer.from(wasm).toString()) as { mode: 'enforce' | 'dry-run'; rules: StandinRule[] };
  return {
    handleRequest(req): FilterOutcome {
      const principal = req.source.principal;
      const user = req.metadata['envoy.filters.http.jwt_authn']?.user as Record<string, string> | undefined;
      const reply = (status: number, error: string, decision: 'deny' | 'unauthenticated'): FilterOutcome => ({
        kind: 'reply', status, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error, request_id: req.headers['x-request-id'] }),
        decision: { decision, status, rule: null, mode: policy.mode, reason: error },
      });
      if (!principal || !req.metadata['envoy.filters.http.jwt_authn']?.fingerprint) return reply(401, 'unauthenticated', 'unauthenticated');
      const rule = policy.rules.find((r) =>
        (!r.from || r.from.includes(principal)) && (!r.methods || r.methods.includes(req.method)) &&
        (!r.prefix || req.path.startsWith(r.prefix)) && (!r.scope || (user?.scope ?? '').split(' ').includes(r.scope)));
      if (!rule && policy.mode === 'enforce') return reply(403, 'forbidden', 'deny');
      const headers: Record<string, string> = { ...req.headers, ':method': req.method, ':path': req.path, ':authority': req.authority };
      for (const [h, v] of Object.entries(rule?.inject ?? {})) if (v === 'user.sub' && user) headers[h] = user.sub;
      return { kind: 'forward', headers, decision: { decision: rule ? 'allow' : 'deny', status: rule ? 200 : 403, rule: rule ? 'r' : null, mode: policy.mode, reason: '' } };
    },
  };
};
