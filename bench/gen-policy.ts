/**
 * Synthetic policies for benchmarks: `n` rules with distinct path templates, a spread of
 * methods, exact and wildcard callers across namespaces, some `when` conditions, deny rules
 * and injections, the way a large organization's policy looks. Deterministic for a given n.
 * `requestFor(i, sample)` builds a request (host API shape) that rule i allows when it is an
 * allow, with the fingerprint Envoy's jwt_authn would have verified for it (unless
 * `fingerprinted` is false).
 */
import { randomBytes } from 'node:crypto';
import { fingerprintClaims } from '../testing/fingerprint.ts';

export const BENCH_SERVICE = 'spiffe://bench.example/ns/core/sa/api';
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'];

export function caller(i: number): string {
  return `spiffe://bench.example/ns/team${i % 50}/sa/svc${i}`;
}

export function generatePolicy(n: number): Record<string, unknown> {
  const rules = Array.from({ length: n }, (_, i) => {
    const rule: Record<string, unknown> = {
      id: `rule-${i}`,
      effect: i % 20 === 19 ? 'deny' : 'allow',
      from: i % 3 === 0 ? [caller(i), `spiffe://bench.example/ns/team${i % 50}/sa/*`] : [caller(i)],
      to: [{ methods: [METHODS[i % 5], METHODS[(i + 2) % 5]], paths: [`/api/v${i % 3}/res${i}/{id}`, `/api/v${i % 3}/res${i}/{id}/**`] }],
    };
    if (i % 20 === 19) rule.when = `request.headers['x-debug'] == 'on${i}'`;
    else if (i % 4 === 1) rule.when = `'scope${i % 7}' in user.scopes && request.headers['x-tenant'].startsWith('t-')`;
    if (i % 20 !== 19 && i % 4 === 2) rule.inject = { 'x-user-id': 'user.sub', 'x-resource': 'request.params.id' };
    return rule;
  });
  return { palisade: 1, name: `bench-${n}`, service: BENCH_SERVICE, mode: 'enforce', rules };
}

/**
 * `n` rules that each have their own `when` (10,000 of them must compile in under
 * 60 s): one expression function per rule, the shape that once made asc superlinear.
 */
export function generateWhenPolicy(n: number): Record<string, unknown> {
  const rules = Array.from({ length: n }, (_, i) => ({ id: `p${i}`, effect: 'allow', to: [{ paths: [`/p${i}/{id}`] }], when: `request.params.id != 'x${i}'` }));
  return { palisade: 1, name: `bench-when-${n}`, service: BENCH_SERVICE, mode: 'enforce', rules };
}

/** Makes the bench's jtis unique across runs in one process (the filter's replay store lives as long as the process). */
const RUN = randomBytes(6).toString('base64url');

/**
 * A request rule i matches (allowed unless rule i is a deny). `sample` makes the
 * fingerprint's jti unique: build one request per measured sample, or the filter's replay
 * check (not the decision) is what gets measured.
 */
export function requestFor(i: number, sample = 0, fingerprinted = true) {
  const method = METHODS[i % 5];
  const path = `/api/v${i % 3}/res${i}/42?page=1`;
  const user = { sub: `user-${i}`, scope: `scope${i % 7} other` };
  const fingerprint = fingerprintClaims({ caller: caller(i), service: BENCH_SERVICE, method, path, jti: `${RUN}.${i}.${sample}` });
  return {
    method,
    path,
    authority: 'api.bench.example',
    headers: { 'x-tenant': 't-1', 'x-request-id': `bench-${i}` },
    source: { principal: caller(i) },
    metadata: { 'envoy.filters.http.jwt_authn': fingerprinted ? { user, fingerprint } : { user } },
  };
}
