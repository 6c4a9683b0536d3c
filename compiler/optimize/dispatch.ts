/**
 * Dispatch indexes, so a decision only looks at rules that can match:
 * - routes: one bucket per method (plus the any-method bucket), each a trie over the
 *   normalized path's segments; path parameters bind by segment position;
 * - principals: whole SPIFFE IDs without wildcards in a hash map, wildcard patterns in a
 *   trie per trust domain.
 * The runtime walks the request's method bucket and the any-method bucket, then keeps the
 * hits whose rule also matches the caller.
 */
import type { PathTemplate } from '../ast.ts';
import { newTrie, type Atom, type PrincipalIndex, type Program, type RouteIndex, type TrieNode } from '../ir.ts';

export function dispatch(p: Program): Program {
  return { ...p, routes: routeIndex(p), principals: principalIndex(p) };
}

function routeIndex(p: Program): RouteIndex {
  const atoms: Atom[] = [];
  const buckets = new Map<string | null, RouteIndex['buckets'][number]>();
  const bucket = (method: string | null) => {
    let b = buckets.get(method);
    if (!b) buckets.set(method, (b = { method, trie: newTrie(), anyPath: [] }));
    return b;
  };
  p.rules.forEach((rule, ri) => {
    for (const route of rule.routes ?? [{ methods: null, path: null }]) {
      const atom = atoms.push({ rule: ri, params: route.path ? params(route.path) : [] }) - 1;
      for (const m of route.methods ?? [null]) {
        const b = bucket(m);
        if (route.path) insert(b.trie, route.path.segments.map((s) => (s.kind === 'param' ? null : s.value)), route.path.rest, atom);
        else b.anyPath.push(atom);
      }
    }
  });
  const sorted = [...buckets.values()].sort((a, b) => (a.method === null ? 1 : b.method === null ? -1 : a.method < b.method ? -1 : 1));
  return { atoms, buckets: sorted };
}

function params(t: PathTemplate): Atom['params'] {
  return t.segments.flatMap((s, pos) => (s.kind === 'param' ? [{ name: s.name, pos }] : []));
}

/** Adds an entry under a segment pattern (`null` = one-segment wildcard). */
export function insert(root: TrieNode, segs: (string | null)[], rest: boolean, id: number): void {
  let n = root;
  for (const s of segs) {
    if (s === null) n = n.any ??= newTrie();
    else {
      let c = n.lits.get(s);
      if (!c) n.lits.set(s, (c = newTrie()));
      n = c;
    }
  }
  const list = rest ? n.rest : n.exact;
  if (list[list.length - 1] !== id) list.push(id);
}

function principalIndex(p: Program): PrincipalIndex {
  const exact = new Map<string, number[]>();
  const domains = new Map<string, TrieNode>();
  p.rules.forEach((rule, ri) => {
    for (const pat of rule.from ?? []) {
      if (!pat.rest && !pat.segments.includes('*')) {
        const id = `spiffe://${pat.trustDomain}${pat.segments.map((s) => `/${s}`).join('')}`;
        const list = exact.get(id) ?? [];
        if (list[list.length - 1] !== ri) list.push(ri);
        exact.set(id, list);
        continue;
      }
      let trie = domains.get(pat.trustDomain);
      if (!trie) domains.set(pat.trustDomain, (trie = newTrie()));
      insert(trie, pat.segments.map((s) => (s === '*' ? null : s)), pat.rest, ri);
    }
  });
  return { exact, domains };
}
