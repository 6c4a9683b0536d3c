/**
 * The checked policy: the contract between the front end (parse → check) and the back end
 * (lower → optimize → emit). Everything here is plain data (JSON-serializable), already
 * validated and typed: the back end never re-checks and never reports user errors.
 *
 * Semantics that both ends rely on are stated here once.
 */

/** Where something came from in a policy file. Lines and columns are 1-based. */
export interface Span {
  file: string;
  line: number;
  col: number;
  /** RFC 6901 JSON pointer of the value in the policy document, e.g. `/rules/0/when`. */
  pointer: string;
}

export type Mode = 'enforce' | 'dry-run';
export type Effect = 'allow' | 'deny';

export interface CheckedPolicy {
  name: string;
  /** The protected service's SPIFFE ID (validated, `spiffe://td/path`). */
  service: string;
  /** Trust domains besides the service's own whose callers are accepted (`federatesWith`). */
  federatesWith: string[];
  mode: Mode;
  /** Source file path as given and the sha256 (hex) of its exact bytes (composed: the service's own policy). */
  source: { file: string; sha256: string };
  rules: CheckedRule[];
  /** Composed from layers (compiler/compose/): every layer, root first, the service's own policy last. */
  layers?: LayerSource[];
}

/** One layer of a composed policy, as the manifest records it. */
export interface LayerSource {
  file: string;
  sha256: string;
  /** The layer's `scope` (`spiffe://td/ns/payments/**`), or the service's ID for its own policy. */
  level: string;
}

/**
 * One policy document as checked, before composition: a service's own policy, or a layer of
 * rules for every service below a SPIFFE ID prefix (the trust-domain root, a namespace).
 * A scope layer's allow rules are the ones it marked `appliesBelow` (the checker refuses any
 * other), its deny rules all apply below it.
 */
export interface CheckedLayer {
  level: { kind: 'service'; id: string } | ScopeLevel;
  name: string;
  /** Always empty for a scope layer (the checker refuses `federatesWith` there). */
  federatesWith: string[];
  mode: Mode;
  source: { file: string; sha256: string };
  rules: CheckedRule[];
  /** Where the document writes its name, level (`service`/`scope`) and mode (the document when it has none). */
  at: { name: Span; level: Span; mode: Span };
}

/** `spiffe://td/ns/payments/**`: every workload ID of trust domain `td` whose path starts with `segments` and goes on. */
export interface ScopeLevel {
  kind: 'scope';
  text: string;
  trustDomain: string;
  segments: string[];
}

export interface CheckedRule {
  /** In a composed policy, a higher layer's rule is `<layer name>/<id>` (ids cannot contain '/'). */
  id: string;
  /** Position in the policy's `rules` array (composed: in the layers' rules, root first); ties and diagnostics refer to it. */
  index: number;
  effect: Effect;
  /** Where the rule is written; in a composed policy, in its layer's file. */
  span: Span;
  /** Caller patterns; a caller matches if any pattern matches. `null`: any authenticated caller. */
  from: PrincipalPattern[] | null;
  /** Request matchers; a request matches if any entry matches. `null`: any request. */
  to: RequestMatch[] | null;
  /** Evaluated only when `from` and `to` match. Type is `bool` or `dyn`. */
  when: TExpr | null;
  /** Headers set (replacing any incoming value) on the forwarded request. Names are lowercase. */
  inject: Injection[];
}

/**
 * A SPIFFE ID pattern. `spiffe://td/a/*\/b` → trustDomain `td`, segments `['a', '*', 'b']`.
 * `*` matches exactly one path segment; `rest` (a final `**`) matches one or more further
 * segments. The trust domain matches exactly (lowercase). No pattern matches a caller
 * outside its trust domain.
 */
export interface PrincipalPattern {
  text: string;
  trustDomain: string;
  segments: string[];
  rest: boolean;
  span: Span;
}

export interface RequestMatch {
  /** Exact, case-sensitive method names; `null`: any method. */
  methods: string[] | null;
  /** `null`: any path. */
  paths: PathTemplate[] | null;
  span: Span;
}

/**
 * `/cards/{id}/**` → segments [lit cards, param id], rest true. Matching runs on the
 * normalized path (no query), segment by segment, exactly (case-sensitive). `/` alone is a
 * template with no segments. A `{name}` matches one non-empty segment; `rest` matches one or
 * more further segments.
 */
export interface PathTemplate {
  text: string;
  segments: PathSegment[];
  rest: boolean;
  span: Span;
}
export type PathSegment = { kind: 'literal'; value: string } | { kind: 'param'; name: string };

export interface Injection {
  header: string;
  value: TExpr; // type `string` or `dyn` (a dyn that is not a string at run time is an evaluation error)
  span: Span;
}

/**
 * Static types. `dyn` is a claim value whose JSON type is known only at run time
 * (string, number, bool, list, map or null).
 */
export type Type =
  | 'string'
  | 'number'
  | 'bool'
  | 'list<string>'
  | 'list<number>'
  | 'map<string>' // request.headers, request.query, request.params: string → string
  | 'dyn';

/** String-keyed maps the request exposes. Indexing an absent key gives '' (not an error). */
export type RequestMap = 'headers' | 'query' | 'params';

/** Scalar attributes. */
export type AttrName =
  | 'request.method'
  | 'request.path' // normalized, without query
  | 'request.host'
  | 'source.principal' // caller SPIFFE ID from mTLS
  | 'user.sub' // string; error when there is no identity context or no `sub` claim
  | 'user.scopes'; // list<string>: `scope` claim split on spaces, else `scp` array; [] when neither; error with no identity context

/**
 * Typed expressions. Every node carries its static type `t` and its span (the location of
 * the sub-expression inside the policy file, for diagnostics and IR comments).
 *
 * Run-time evaluation can fail (missing claim, wrong dynamic type, no identity context,
 * `user.*` read without a verified token). An error propagates upward through every
 * operator, except that `&&` and `||` short-circuit left to right (`false && err` is false,
 * `true || err` is true). A `when` that ends in error (or a non-bool dyn) makes an `allow`
 * rule not apply and a `deny` rule apply: fail closed.
 */
export type TExpr =
  | { k: 'str'; v: string; t: 'string'; span: Span }
  | { k: 'num'; v: number; t: 'number'; span: Span }
  | { k: 'bool'; v: boolean; t: 'bool'; span: Span }
  /** A list literal; items are all of the element type. */
  | { k: 'list'; items: TExpr[]; t: 'list<string>' | 'list<number>'; span: Span }
  | { k: 'attr'; name: AttrName; t: Type; span: Span }
  /** `request.headers` / `.query` / `.params` as a whole (for `in` and `size`). */
  | { k: 'map'; map: RequestMap; t: 'map<string>'; span: Span }
  /** `request.headers['x-a']`: constant key (lowercased for headers); '' when absent. */
  | { k: 'lookup'; map: RequestMap; key: string; t: 'string'; span: Span }
  /** `user.claims` followed by constant keys: `user.claims.address.country` → path ['address','country']. Missing → error. Empty path = the whole claims map. */
  | { k: 'claim'; path: string[]; t: 'dyn'; span: Span }
  | { k: 'not'; e: TExpr; t: 'bool' | 'dyn'; span: Span }
  | { k: 'and' | 'or'; l: TExpr; r: TExpr; t: 'bool' | 'dyn'; span: Span }
  /**
   * Comparison. Both sides have the same static type, or one side is `dyn` (checked at run
   * time against the other side's type: a mismatch is an error). Ordering ops apply to
   * numbers and strings (byte-wise). `==`/`!=` also apply to bools.
   */
  | { k: 'cmp'; op: '==' | '!=' | '<' | '<=' | '>' | '>='; l: TExpr; r: TExpr; t: 'bool'; span: Span }
  /** `x in list` (membership) or `key in map` (presence; for claims: key in a dyn map, or element in a dyn list). */
  | { k: 'in'; elem: TExpr; coll: TExpr; t: 'bool'; span: Span }
  /** `s.startsWith(x)`, `s.endsWith(x)`, `s.contains(x)`: strings only (dyn checked at run time). */
  | { k: 'call'; fn: 'startsWith' | 'endsWith' | 'contains'; target: TExpr; arg: TExpr; t: 'bool'; span: Span }
  /** `size(x)`: bytes of a string (UTF-8), items of a list, entries of a map. */
  | { k: 'size'; e: TExpr; t: 'number'; span: Span };

/** A compiler diagnostic: `file:line:col: severity: message (pointer)`. */
export interface Diagnostic {
  severity: 'error' | 'warning';
  message: string;
  span: Span;
}

export function formatDiagnostic(d: Diagnostic): string {
  const { file, line, col, pointer } = d.span;
  return `${file}:${line}:${col}: ${d.severity}: ${d.message}${pointer ? ` (at ${pointer || '/'})` : ''}`;
}
