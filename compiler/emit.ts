/**
 * Code generation: `Program` → AssemblyScript source of `filters/policy.generated.ts`.
 * The policy becomes static data (one i32 table, one byte blob; layouts documented in
 * runtime/tables.ts) plus one function per `when` and per injection. The output is meant
 * to be read (`palisade compile --emit as`): every function names its rule and source.
 */
import type { Atom, Expr, Program, RouteIndex, TrieNode } from './ir.ts';
import { printExpr } from './ir.ts';

/** FNV-1a over UTF-8 bytes; runtime/bytes.ts hashes the same way. */
export function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

const utf8 = (s: string) => Buffer.from(s, 'utf8');

/** Header slots of the table (runtime/tables.ts H_*). */
const H = { ruleCount: 0, rules: 1, methods: 2, anyBucket: 3, atoms: 4, principalExact: 5, principalDomains: 6, strip: 7, slotCount: 8, slots: 9, paramNames: 10, dryRun: 11 };
const HEADER_SIZE = 12;
const RULE_STRIDE = 6;

class Tables {
  readonly ints: number[] = new Array(HEADER_SIZE).fill(0);
  private readonly blob: number[] = [];
  private readonly interned = new Map<string, number>();

  /** Interns a string in the blob: [offset, byte length]. */
  str(s: string): [number, number] {
    const bytes = utf8(s);
    let off = this.interned.get(s);
    if (off === undefined) {
      off = this.blob.length;
      this.blob.push(...bytes);
      this.interned.set(s, off);
    }
    return [off, bytes.length];
  }
  reserve(n: number): number {
    const at = this.ints.length;
    for (let i = 0; i < n; i++) this.ints.push(-1);
    return at;
  }
  /** `[count, items…]`; an empty list is -1. */
  list(items: number[]): number {
    if (!items.length) return -1;
    const at = this.ints.length;
    this.ints.push(items.length, ...items);
    return at;
  }
  /** `[count, (a, b) × count]`; an empty list is -1 unless `always`. */
  pairs(items: [number, number][], always = false): number {
    if (!items.length && !always) return -1;
    const at = this.ints.length;
    this.ints.push(items.length, ...items.flat());
    return at;
  }
  strings(items: string[], always = false): number {
    return this.pairs(items.map((s) => this.str(s)), always);
  }
  /** Open-addressing hash table, at most half full, linear probing. */
  hash(entries: [string, number][]): number {
    if (!entries.length) return -1;
    let size = 2;
    while (size < entries.length * 2) size <<= 1;
    const at = this.reserve(1 + size * 3);
    this.ints[at] = size - 1;
    for (const [key, value] of entries) {
      const [off, len] = this.str(key);
      let i = fnv1a(utf8(key)) & (size - 1);
      while (this.ints[at + 1 + i * 3] !== -1) i = (i + 1) & (size - 1);
      this.ints.splice(at + 1 + i * 3, 3, off, len, value);
    }
    return at;
  }
  trie(n: TrieNode): number {
    const at = this.reserve(4);
    const lits = this.hash([...n.lits].map(([seg, child]) => [seg, this.trie(child)]));
    const any = n.any ? this.trie(n.any) : -1;
    this.ints.splice(at, 4, lits, any, this.list(n.exact), this.list(n.rest));
    return at;
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

export function emit(p: Program): Emitted {
  if (!p.routes || !p.principals) throw new Error('emit needs the dispatch pass');
  const T = new Tables();
  const set = (h: number, v: number) => (T.ints[h] = v);
  const paramIds = new Map<string, number>();
  const paramId = (name: string) => {
    let id = paramIds.get(name);
    if (id === undefined) paramIds.set(name, (id = paramIds.size));
    return id;
  };

  set(H.ruleCount, p.rules.length);
  set(H.dryRun, p.mode === 'dry-run' ? 1 : 0);
  const rules = T.reserve(p.rules.length * RULE_STRIDE);
  set(H.rules, p.rules.length ? rules : -1);
  p.rules.forEach((r, i) => {
    const [idOff, idLen] = T.str(JSON.stringify(r.id).slice(1, -1));
    const injects = T.strings(r.inject.map((x) => x.header));
    T.ints.splice(rules + i * RULE_STRIDE, RULE_STRIDE, r.effect === 'deny' ? 1 : 0, r.from === null ? 1 : 0, idOff, idLen, r.when ? 1 : 0, injects);
  });

  const atoms = T.reserve(p.routes.atoms.length * 2);
  set(H.atoms, atoms);
  p.routes.atoms.forEach((a: Atom, i) => {
    T.ints.splice(atoms + i * 2, 2, a.rule, T.pairs(a.params.map((x) => [paramId(x.name), x.pos])));
  });
  const bucketOf = (b: RouteIndex['buckets'][number]) => {
    const at = T.reserve(2);
    const root = b.trie.lits.size || b.trie.any || b.trie.exact.length || b.trie.rest.length ? T.trie(b.trie) : -1;
    T.ints.splice(at, 2, root, T.list(b.anyPath));
    return at;
  };
  const named = p.routes.buckets.filter((b) => b.method !== null).map((b) => [b.method!, bucketOf(b)] as [string, number]);
  set(H.methods, T.hash(named));
  const any = p.routes.buckets.find((b) => b.method === null);
  set(H.anyBucket, any ? bucketOf(any) : -1);

  set(H.principalExact, T.hash([...p.principals.exact].map(([id, rs]) => [id, T.list(rs)])));
  set(H.principalDomains, T.hash([...p.principals.domains].map(([td, trie]) => [td, T.trie(trie)])));
  set(H.strip, T.strings(p.strip, true));

  set(H.slotCount, p.slots.length);
  const slots = T.reserve(p.slots.length * 3);
  set(H.slots, slots);
  p.slots.forEach((s, i) => {
    const rec = s.kind === 'claim' ? [2, T.strings(s.path, true), 0] : [s.kind === 'header' ? 0 : 1, ...T.str(s.key)];
    T.ints.splice(slots + i * 3, 3, ...rec);
  });

  const code = new Code(T, paramId);
  const whens = p.rules.flatMap((r, i) => (r.when ? [code.fn(`when${i}`, `r${i} ${JSON.stringify(r.id)} when: ${printExpr(r.when, p)}`, r.when)] : []));
  const injects = p.rules.flatMap((r, i) => r.inject.map((x, k) => code.fn(`inject${i}_${k}`, `r${i} ${JSON.stringify(r.id)} sets ${x.header} = ${printExpr(x.value, p)}`, x.value)));
  set(H.paramNames, T.strings([...paramIds.keys()]));

  const scratch = Math.max(16, p.rules.length * 16 + p.slots.length * 8);
  const blob = T.bytes();
  const src = [
    `// Generated by palisade from ${p.source.file} (sha256 ${p.source.sha256}). Do not edit.`,
    `// policy ${JSON.stringify(p.name)} for ${p.service}, default mode ${p.mode}, ${p.rules.length} live rules.`,
    `// Layout of TABLE and BLOB: runtime/tables.ts. Decision procedure: compiler/ir.ts.`,
    `import { V, S, NUM, BOOL, LIST, ERR, K_BOOL, EQ, NE, LT, LE, GT, GE, STARTS_WITH, ENDS_WITH, CONTAINS,`,
    `  method, path, host, principal, userSub, userScopes, headersMap, queryMap, paramsMap, param, slot,`,
    `  not, asBool, cmp, inOp, call, size, setInjection } from "../runtime/expr";`,
    '',
    `export const TABLE = memory.data<i32>([${rows(T.ints)}]);`,
    `export const BLOB = memory.data<u8>([${rows(blob.length ? blob : [0])}]);`,
    `export const SCRATCH = memory.data(${scratch});`,
    '',
    'export function evalWhen(r: i32): usize {',
    '  switch (r) {',
    ...p.rules.flatMap((r, i) => (r.when ? [`    case ${i}: return changetype<usize>(when${i}());`] : [])),
    '  }',
    '  return changetype<usize>(BOOL(true));',
    '}',
    '',
    'export function evalInject(r: i32, i: i32): bool {',
    '  switch ((r << 8) | i) {',
    ...p.rules.flatMap((r, i) => r.inject.map((_, k) => `    case ${(i << 8) | k}: return setInjection(inject${i}_${k}());`)),
    '  }',
    '  return false;',
    '}',
    ...whens,
    ...injects,
    '',
  ].join('\n');
  return { source: src, tableBytes: T.ints.length * 4 + blob.length };
}

/** Numbers 24 to a line, so large tables stay diffable. */
function rows(ns: number[]): string {
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

  fn(name: string, comment: string, e: Expr): string {
    this.temps = 0;
    const body: string[] = [];
    const result = this.expr(e, body, '  ');
    return ['', `// ${comment.replace(/\n/g, ' ')}`, `function ${name}(): V {`, ...body, `  return ${result};`, '}'].join('\n');
  }

  private expr(e: Expr, out: string[], ind: string): string {
    const go = (x: Expr) => this.expr(x, out, ind);
    switch (e.k) {
      case 'str': {
        const [off, len] = this.T.str(e.v);
        return `S(${off}, ${len}) /* ${JSON.stringify(e.v).replace(/\*\//g, '*\\/')} */`;
      }
      case 'num': return `NUM(${Number.isInteger(e.v) ? `${e.v}.0` : String(e.v)})`;
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
