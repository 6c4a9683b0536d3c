/**
 * Dispatch indexes, so a decision only looks at rules that can match:
 * - routes: one trie over the normalized path's segments (literal children hashed, one
 *   wildcard child); each hit names an atom that says which rule, which methods (checked
 *   with one bit test at run time) and where the path parameters sit (by position);
 * - principals: per trust domain, the ID paths without wildcards in a hash map and the
 *   wildcard patterns in a trie.
 * The runtime walks the trie for the request's path and keeps the hits whose atom accepts
 * the method and whose rule matches the caller.
 */
import type { PathTemplate } from '../frontend/ast.ts';
import { newTrie, type Atom, type PrincipalIndex, type Program, type RouteIndex, type TrieNode } from '../ir/ir.ts';

export function dispatch(p: Program): Program {
  return { ...p, routes: routeIndex(p), principals: principalIndex(p) };
}

function routeIndex(p: Program): RouteIndex {
  const atoms: Atom[] = [];
  const ids = new Map<string, number>();
  const atomOf = (a: Atom) => {
    const key = JSON.stringify(a);
    let id = ids.get(key);
    if (id === undefined) ids.set(key, (id = atoms.push(a) - 1));
    return id;
  };
  const index: RouteIndex = { atoms, trie: newTrie(), anyPath: [] };
  p.rules.forEach((rule, ri) => {
    for (const route of rule.routes ?? [{ methods: null, path: null }]) {
      const atom = atomOf({ rule: ri, methods: route.methods ? [...route.methods].sort() : null, params: route.path ? params(route.path) : [] });
      if (!route.path) {
        if (!index.anyPath.includes(atom)) index.anyPath.push(atom);
      } else insert(index.trie, route.path.segments.map((s) => (s.kind === 'param' ? null : s.value)), route.path.rest, atom);
    }
  });
  return index;
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
  // Every federated trust domain has an entry, even one no pattern names: the filter accepts a
  // caller of another trust domain than the service's only when the index knows it (filters/policy/principal.ts).
  const domains: PrincipalIndex['domains'] = new Map(p.federatesWith.map((td) => [td, { exact: new Map(), trie: newTrie() }]));
  p.rules.forEach((rule, ri) => {
    for (const pat of rule.from ?? []) {
      let d = domains.get(pat.trustDomain);
      if (!d) domains.set(pat.trustDomain, (d = { exact: new Map(), trie: newTrie() }));
      if (!pat.rest && !pat.segments.includes('*')) {
        const path = pat.segments.map((s) => `/${s}`).join('');
        const list = d.exact.get(path) ?? [];
        if (list[list.length - 1] !== ri) list.push(ri);
        d.exact.set(path, list);
      } else insert(d.trie, pat.segments.map((s) => (s === '*' ? null : s)), pat.rest, ri);
    }
  });
  return { domains };
}
