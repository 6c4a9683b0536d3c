/**
 * Code generation: `Plan` → AssemblyScript source of `filters/policy/generated.ts`.
 * The policy becomes static data (one i32 table, one byte blob; layouts documented in
 * filters/policy/tables.ts) plus one function per `when` and per injection. The output is meant
 * to be read (`palisade compile --emit as`): every function names its rule and source.
 */
import type { Expr } from '../ir/ir.ts';
import type { Atom, Plan, TrieNode } from '../plan/plan.ts';
import { printPlanExpr } from '../plan/print.ts';
import { tableHash } from './table-hash.ts';
import {
  ATOM_STRIDE, HEADER_SIZE, H_ANY_PATH, H_ATOMS, H_DRY_RUN, H_METHODS, H_METHOD_LISTS, H_PARAM_NAMES, H_PRINCIPALS, H_RULES,
  H_RULE_COUNT, H_SERVICE, H_SERVICE_LEN, H_SLOTS, H_SLOT_COUNT, H_STRIP, H_TRIE, RULE_ANY_CALLER, RULE_DENY, RULE_HAS_WHEN,
  RULE_STRIDE, SCRATCH_RULE_BYTES, SCRATCH_SLOT_BYTES, SLOT_CLAIM, SLOT_HEADER, SLOT_QUERY, SLOT_STRIDE,
} from './table-layout.ts';

const utf8 = (s: string) => Buffer.from(s, 'utf8');

/** A key's first slot in a hash table of `size` slots: hash × size / 2³², as filters/policy/tables.ts (exact: the product stays below 2⁵³). */
const homeSlot = (hash: number, size: number) => Math.floor((hash * size) / 2 ** 32);

/** Method bit masks work up to this many distinct methods; beyond, atoms list method ids. */
const MASK_METHODS = 31;

class Tables {
  readonly ints: number[] = new Array(HEADER_SIZE).fill(0);
  private readonly blob: number[] = [];
  private readonly interned = new Map<string, number>();
  private readonly lists = new Map<string, number>();

  /** Interns a string in the blob: [offset, byte length]. */
  str(s: string): [number, number] {
    const bytes = utf8(s);
    let off = this.interned.get(s);
    if (off === undefined) {
      off = this.blob.length;
      append(this.blob, bytes);
      this.interned.set(s, off);
    }
    return [off, bytes.length];
  }
  reserve(n: number): number {
    const at = this.ints.length;
    for (let i = 0; i < n; i++) this.ints.push(-1);
    return at;
  }
  /** `[count, words…]`, shared with any identical list; -1 when empty unless `always`. */
  private record(count: number, words: number[], always: boolean): number {
    if (!count && !always) return -1;
    const key = `${count}:${words.join(',')}`;
    let at = this.lists.get(key);
    if (at === undefined) {
      at = this.ints.length;
      this.ints.push(count);
      append(this.ints, words);
      this.lists.set(key, at);
    }
    return at;
  }
  /** An item reference: -1 none, -(x + 2) the single item x, else a list offset. */
  items(items: number[]): number {
    if (items.length === 1) return -(items[0] + 2);
    return this.record(items.length, items, false);
  }
  pairs(items: [number, number][], always = false): number {
    return this.record(items.length, items.flat(), always);
  }
  triples(items: [number, number, number][]): number {
    return this.record(items.length, items.flat(), false);
  }
  strings(items: string[], always = false): number {
    return this.pairs(items.map((s) => this.str(s)), always);
  }
  /** Hash table, twice as many slots as keys, linear probing: [size, slots…, entries…]. */
  hash(entries: [string, number][]): number {
    if (!entries.length) return -1;
    const size = entries.length * 2;
    const at = this.reserve(1 + size);
    this.ints[at] = size;
    for (const [key, value] of entries) {
      const entry = this.ints.length;
      this.ints.push(...this.str(key), value);
      let i = homeSlot(tableHash(utf8(key)), size);
      while (this.ints[at + 1 + i] !== -1) i = (i + 1) % size;
      this.ints[at + 1 + i] = entry;
    }
    return at;
  }
  /**
   * A trie, children before their parent. Iterative: a path template of thousands of
   * segments is a trie as deep, which recursion here would not survive.
   */
  trie(root: TrieNode): number {
    const at = new Map<TrieNode, number>();
    const stack: { n: TrieNode; children: boolean }[] = [{ n: root, children: false }];
    while (stack.length) {
      const { n, children } = stack.pop()!;
      if (!children) {
        stack.push({ n, children: true });
        for (const c of [...n.lits.values(), ...(n.any ? [n.any] : [])]) stack.push({ n: c, children: false });
        continue;
      }
      const record = [this.hash([...n.lits].map(([seg, c]) => [seg, at.get(c)!])), n.any ? at.get(n.any)! : -1, this.items(n.exact), this.items(n.rest)];
      at.set(n, this.ints.length);
      append(this.ints, record);
    }
    return at.get(root)!;
  }
  bytes(): number[] {
    return this.blob;
  }
}

export interface Emitted {
  source: string;
  /** Bytes of static tables (for reports). */
  tableBytes: number;
}

export function emit(p: Plan): Emitted {
  const T = new Tables();
  const set = (h: number, v: number) => (T.ints[h] = v);
  const paramIds = new Map<string, number>();
  const paramId = (name: string) => {
    let id = paramIds.get(name);
    if (id === undefined) paramIds.set(name, (id = paramIds.size));
    return id;
  };

  set(H_RULE_COUNT, p.rules.length);
  set(H_DRY_RUN, p.mode === 'dry-run' ? 1 : 0);
  const [serviceOff, serviceLen] = T.str(p.service); // the only `aud` a fingerprint may carry
  set(H_SERVICE, serviceOff);
  set(H_SERVICE_LEN, serviceLen);
  const rules = T.reserve(p.rules.length * RULE_STRIDE);
  set(H_RULES, p.rules.length ? rules : -1);
  // One function per distinct expression: rules that say the same thing share code, and the
  // table names the function (a switch over functions, not over rules, stays small).
  const code = new Code(T, paramId);
  p.rules.forEach((r, i) => {
    const flags = (r.effect === 'deny' ? RULE_DENY : 0) | (r.from === null ? RULE_ANY_CALLER : 0) | (r.when ? RULE_HAS_WHEN : 0);
    const [idOff, idLen] = T.str(JSON.stringify(r.id).slice(1, -1));
    const label = `r${i} ${JSON.stringify(r.id)}`;
    const when = r.when ? code.fn(`${label} when: ${printPlanExpr(r.when, p)}`, r.when) : -1;
    const injects = T.triples(r.inject.map((x) => [...T.str(x.header), code.fn(`${label} sets ${x.header} = ${printPlanExpr(x.value, p)}`, x.value)]));
    T.ints.splice(rules + i * RULE_STRIDE, RULE_STRIDE, flags, idOff, idLen, injects, when);
  });

  const { atoms, trie, anyPath } = p.routes;
  const methods = [...new Set(atoms.flatMap((a) => a.methods ?? []))].sort();
  const byMask = methods.length <= MASK_METHODS;
  set(H_METHODS, T.hash(methods.map((m, i) => [m, i])));
  set(H_METHOD_LISTS, byMask ? 0 : 1);
  const atomAt = T.reserve(atoms.length * ATOM_STRIDE);
  set(H_ATOMS, atomAt);
  atoms.forEach((a: Atom, i) => {
    const ids = a.methods?.map((m) => methods.indexOf(m));
    const accepts = !ids ? -1 : byMask ? ids.reduce((mask, id) => mask | (1 << id), 0) : T.pairs(ids.map((id) => [id, 0]));
    T.ints.splice(atomAt + i * ATOM_STRIDE, ATOM_STRIDE, a.rule, T.pairs(a.params.map((x) => [paramId(x.name), x.pos])), accepts);
  });
  const empty = !trie.lits.size && !trie.any && !trie.exact.length && !trie.rest.length;
  set(H_TRIE, empty ? -1 : T.trie(trie));
  set(H_ANY_PATH, T.items(anyPath));

  set(H_PRINCIPALS, T.hash([...p.principals.domains].map(([td, d]) => {
    const record = T.reserve(2);
    T.ints.splice(record, 2, T.hash([...d.exact].map(([path, rs]) => [path, T.items(rs)])), T.trie(d.trie));
    return [td, record];
  })));
  set(H_STRIP, T.strings(p.strip, true));

  set(H_SLOT_COUNT, p.slots.length);
  const slots = T.reserve(p.slots.length * SLOT_STRIDE);
  set(H_SLOTS, slots);
  p.slots.forEach((s, i) => {
    const rec = s.kind === 'claim' ? [SLOT_CLAIM, T.strings(s.path, true), 0] : [s.kind === 'header' ? SLOT_HEADER : SLOT_QUERY, ...T.str(s.key)];
    T.ints.splice(slots + i * SLOT_STRIDE, SLOT_STRIDE, ...rec);
  });

  set(H_PARAM_NAMES, T.strings([...paramIds.keys()]));

  const scratch = Math.max(16, p.rules.length * SCRATCH_RULE_BYTES + p.slots.length * SCRATCH_SLOT_BYTES);
  const blob = T.bytes();
  const src = [
    `// Generated by palisade from ${p.source.file} (sha256 ${p.source.sha256}). Do not edit.`,
    `// policy ${JSON.stringify(p.name)} for ${p.service}, default mode ${p.mode}, ${p.rules.length} live rules.`,
    `// Layout of TABLE and BLOB: filters/policy/tables.ts. Decision procedure: compiler/ir/ir.ts.`,
    `import { V, S, NUM, BOOL, LIST, ERR, K_BOOL, EQ, NE, LT, LE, GT, GE, STARTS_WITH, ENDS_WITH, CONTAINS,`,
    `  method, path, host, principal, userSub, userScopes, headersMap, queryMap, paramsMap, param, slot,`,
    `  not, asBool, cmp, inOp, call, size } from "./expr";`,
    '',
    `export const TABLE = memory.data<i32>([${rows(T.ints)}]);`,
    `export const BLOB = memory.data<u8>([${rows(blob.length ? blob : [0])}]);`,
    `export const SCRATCH = memory.data(${scratch});`,
    '',
    '// The expression functions by id, called through the wasm function table. A switch over',
    '// them made asc inline every function into one that grew with the policy, and optimizing',
    '// that took time superlinear in its size (10,000 `when`s did not build in 400 s); through',
    '// the table each stays a small function optimized on its own, so builds grow linearly.',
    `const FNS: StaticArray<() => V> = [${rows(code.names())}];`,
    '',
    '/** Evaluates expression function `f` (an id from the rule table: always in range); the result is a V. */',
    'export function evalFn(f: i32): usize {',
    '  return changetype<usize>(unchecked(FNS[f])());',
    '}',
    ...code.functions(),
    '',
  ].join('\n');
  return { source: src, tableBytes: T.ints.length * 4 + blob.length };
}

/** `to.push(...items)` without passing every item as an argument (a literal of hundreds of KB would overflow the stack). */
function append(to: number[], items: Iterable<number>): void {
  for (const x of items) to.push(x);
}

/** Items 24 to a line, so large tables stay diffable. */
function rows(ns: (number | string)[]): string {
  const lines: string[] = [];
  for (let i = 0; i < ns.length; i += 24) lines.push(ns.slice(i, i + 24).join(', '));
  return lines.length > 1 ? `\n  ${lines.join(',\n  ')},\n` : lines.join('');
}

const ATTRS: Record<string, string> = {
  'request.method': 'method()',
  'request.path': 'path()',
  'request.host': 'host()',
  'source.principal': 'principal()',
  'user.sub': 'userSub()',
  'user.scopes': 'userScopes()',
};
const CMP: Record<string, string> = { '==': 'EQ', '!=': 'NE', '<': 'LT', '<=': 'LE', '>': 'GT', '>=': 'GE' };
const CALL: Record<string, string> = { startsWith: 'STARTS_WITH', endsWith: 'ENDS_WITH', contains: 'CONTAINS' };
const MAPS: Record<string, string> = { headers: 'headersMap()', query: 'queryMap()', params: 'paramsMap()' };

/** Expression → AssemblyScript: plain calls, with temporaries only where && / || short-circuit. */
class Code {
  private temps = 0;
  constructor(private readonly T: Tables, private readonly paramId: (name: string) => number) {}

  private readonly byBody = new Map<string, { id: number; comments: string[] }>();

  /** The id of the function computing `e`, shared with any identical one. */
  fn(comment: string, e: Expr): number {
    this.temps = 0;
    const body: string[] = [];
    const result = this.expr(e, body, '  ');
    const code = [...body, `  return ${result};`].join('\n');
    let f = this.byBody.get(code);
    if (!f) this.byBody.set(code, (f = { id: this.byBody.size, comments: [] }));
    f.comments.push(comment.replace(/\n/g, ' '));
    return f.id;
  }

  names(): string[] {
    return [...this.byBody.values()].map((f) => `fn${f.id}`);
  }

  functions(): string[] {
    return [...this.byBody].map(([code, f]) => {
      const shown = f.comments.length > 3 ? [...f.comments.slice(0, 3), `… and ${f.comments.length - 3} more`] : f.comments;
      return ['', ...shown.map((c) => `// ${c}`), `function fn${f.id}(): V {`, code, '}'].join('\n');
    });
  }

  private expr(e: Expr, out: string[], ind: string): string {
    const go = (x: Expr) => this.expr(x, out, ind);
    switch (e.k) {
      case 'str': {
        const [off, len] = this.T.str(e.v);
        return `S(${off}, ${len}) /* ${JSON.stringify(e.v).replace(/\*\//g, '*\\/')} */`;
      }
      case 'num': return `NUM(${/^-?\d+$/.test(String(e.v)) ? `${e.v}.0` : String(e.v)})`; // an f64 literal (1e+21 stays as is)
      case 'bool': return `BOOL(${e.v})`;
      case 'list': return e.items.length ? `LIST([${e.items.map(go).join(', ')}])` : 'LIST(new Array<V>(0))';
      case 'attr': return ATTRS[e.name];
      case 'map': return MAPS[e.map];
      case 'lookup': return `param(${this.paramId(e.key)}) /* ${e.key} */`; // headers/query became slots
      case 'claim': throw new Error('claims are read through slots');
      case 'slot': return `slot(${e.slot})`;
      case 'not': return `not(${go(e.e)})`;
      case 'cmp': return `cmp(${CMP[e.op]}, ${go(e.l)}, ${go(e.r)})`;
      case 'in': return `inOp(${go(e.elem)}, ${go(e.coll)})`;
      case 'call': return `call(${CALL[e.fn]}, ${go(e.target)}, ${go(e.arg)})`;
      case 'size': return `size(${go(e.e)})`;
      case 'and':
      case 'or': {
        const l = go(e.l);
        const t = `t${this.temps++}`;
        const left = `t${this.temps++}`;
        out.push(`${ind}const ${left} = ${l};`, `${ind}let ${t}: V;`);
        out.push(`${ind}if (${left}.kind != K_BOOL) ${t} = ERR();`);
        out.push(`${ind}else if (${left}.bool == ${e.k === 'or'}) ${t} = ${left}; // short-circuit`);
        out.push(`${ind}else {`);
        const r = this.expr(e.r, out, ind + '  ');
        out.push(`${ind}  ${t} = asBool(${r});`, `${ind}}`);
        return t;
      }
    }
  }
}
