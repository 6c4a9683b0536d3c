/**
 * The plan: a `Program` completed with everything the back end needs to lay it out, as the
 * required planning steps compute it (compiler/plan/index.ts). Every field is present and
 * non-null, so the back end never checks whether a step ran; a `Program` cannot be passed
 * where a `Plan` is expected.
 */
import type { Program } from '../ir/ir.ts';

export interface Plan extends Program {
  /** Values read from the request at most once each; rule expressions read them as `slot` (slots.ts). */
  slots: Slot[];
  /** Path trie and method tests for every rule's routes (dispatch.ts). */
  routes: RouteIndex;
  /** Which rules a caller's SPIFFE ID matches (dispatch.ts). */
  principals: PrincipalIndex;
}

export type Slot = { kind: 'header' | 'query'; key: string } | { kind: 'claim'; path: string[] };

/** A trie over path or SPIFFE-ID segments; the numbers are ids of whatever it indexes. */
export interface TrieNode {
  /** Literal children, keyed by the exact segment. */
  lits: Map<string, TrieNode>;
  /** `{param}` / `*` child: any one non-empty segment. */
  any: TrieNode | null;
  /** Entries that end exactly here. */
  exact: number[];
  /** Entries whose final `**` matches one or more further segments. */
  rest: number[];
}

/** What one route hit means: a rule, the methods it accepts, and where its path parameters sit. */
export interface Atom {
  rule: number;
  /** `null`: any method. */
  methods: string[] | null;
  /** Parameter name → segment position in the normalized path. */
  params: { name: string; pos: number }[];
}

export interface RouteIndex {
  /** Routes that differ only in their path (same rule, methods, parameters) share an atom. */
  atoms: Atom[];
  /** One trie over the normalized path's segments; a hit is kept when its atom accepts the method. */
  trie: TrieNode;
  /** Atoms of routes without a path. */
  anyPath: number[];
}

export interface PrincipalIndex {
  /** Per trust domain: whole IDs without wildcards hashed by their path, and a trie of patterns. */
  domains: Map<string, { exact: Map<string, number[]>; trie: TrieNode }>;
}

export function newTrie(): TrieNode {
  return { lits: new Map(), any: null, exact: [], rest: [] };
}
