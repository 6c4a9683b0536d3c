/**
 * The compiler ↔ runtime table contract. The emitter (compiler/backend/emit.ts, with the key
 * hash of compiler/backend/table-hash.ts) writes the policy tables; the runtime
 * (filters/policy/tables.ts and the readers built on it) reads them. A probe entry point is
 * compiled exactly like a policy filter (same runtime, same asc flags, the policy's real
 * generated module) and exports the runtime's own view: its layout constants, its keyHash,
 * hashFind and rule reader over the installed tables. Changing the layout, the hash or the
 * slot placement on one side only makes these assertions fail.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileChecked, type Compiled } from '../../../compiler/index.ts';
import { buildEntry, GENERATED } from '../../../compiler/backend/build.ts';
import { tableHash } from '../../../compiler/backend/table-hash.ts';
import * as layout from '../../../compiler/backend/table-layout.ts';
import { checked } from './helpers.ts';

const PROBE = 'filters/policy/layout-probe.ts';
const NAMES = Object.keys(layout) as (keyof typeof layout)[];
/** The runtime's view, compiled with the policy's generated module and installed as index.ts installs it. */
const probe = `import "../../runtime/abort";
import { install, keyHash, hashFind, t, B, slotCount, slotValue, ${NAMES.join(', ')} } from "./tables";
import { ruleField } from "./engine";
import { BLOB, SCRATCH, TABLE, evalFn } from "./generated";

install(TABLE, BLOB, SCRATCH, evalFn);

const KEY = memory.data(4096);
export function key(): usize { return KEY; }
export function probeKeyHash(len: i32): u32 { return keyHash(KEY, len); }
export function probeHashFind(table: i32, len: i32): i32 { return hashFind(table, KEY, len); }
export function probeT(i: i32): i32 { return t(i); }
export function blob(): usize { return B; }
export function rule(r: i32, field: i32): i32 { return ruleField(r, field); }
/** Bytes of the scratch area install() lays out for this policy's rules and slots. */
export function scratchUsed(): usize { return slotValue + (<usize>slotCount << 2) - SCRATCH; }
export function scratchAt(): usize { return SCRATCH; }
${NAMES.map((n) => `export function constant_${n}(): i32 { return ${n}; }`).join('\n')}
`;

const CORP = 'spiffe://corp.test';
// Enough keys that a home slot computed differently on one side misses (each table is half empty).
const METHODS = Array.from({ length: 40 }, (_, i) => `M${i}-${'X'.repeat(i % 7)}`);
const CALLERS = Array.from({ length: 60 }, (_, i) => `${CORP}/ns/n${i}/sa/${'s'.repeat(1 + (i % 9))}`);
const POLICY = checked([
  { id: 'wall:admin', effect: 'deny', to: [{ paths: ['/admin/**'] }] },
  ...CALLERS.map((c, i) => ({ id: `caller-${i}`, effect: 'allow', from: [c], to: [{ methods: [METHODS[i % METHODS.length]], paths: [`/r${i}/{id}`] }] })),
  { id: 'slots', effect: 'allow', from: ['spiffe://partner.test/**', 'spiffe://other.test/ns/a'],
    when: "request.headers['x-tenant'] == 't' && request.query['q'] != '' && user.claims.org.id == 'o'", to: [{ paths: ['/s/{id}'] }], inject: { 'x-b': "'1'", 'x-a': 'request.params.id' } },
  { id: 'anyone', effect: 'allow', when: "request.headers['x-tenant'] == 'u'" },
], { mode: 'dry-run', federatesWith: ['partner.test', 'other.test', 'quiet.test'] });

type Probe = Record<string, (...args: number[]) => number> & { memory: WebAssembly.Memory };
let compiled: Compiled;
let wasm: Probe;

test.before(async () => {
  compiled = await compileChecked(POLICY);
  const bytes = await buildEntry(PROBE, { [GENERATED]: compiled.as, [PROBE]: probe });
  const mod = new WebAssembly.Module(new Uint8Array(bytes));
  // Host functions the runtime links; the probe calls none of them (each would throw).
  const imports: Record<string, Record<string, () => never>> = {};
  for (const i of WebAssembly.Module.imports(mod)) {
    (imports[i.module] ??= {})[i.name] = () => { throw new Error(`probe called ${i.module}.${i.name}`); };
  }
  const instance = await WebAssembly.instantiate(mod, imports);
  wasm = instance.exports as unknown as Probe;
  wasm._initialize();
});

const mem = () => new Uint8Array(wasm.memory.buffer);
const t = (i: number) => wasm.probeT(i);
const text = (off: number, len: number) => Buffer.from(mem().subarray(wasm.blob() + off, wasm.blob() + off + len)).toString('utf8');
const setKey = (bytes: Uint8Array) => mem().set(bytes, wasm.key());
/** The runtime's hashFind for `key`: the value's offset in the table, or -1. */
function find(table: number, key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  setKey(bytes);
  return wasm.probeHashFind(table, bytes.length);
}
/** An items reference (-1 none, -(x + 2) one item, else [count, x…]) decoded by the table's rule. */
function items(ref: number): number[] {
  if (ref === -1) return [];
  if (ref < -1) return [-ref - 2];
  return Array.from({ length: t(ref) }, (_, k) => t(ref + 1 + k));
}
/** A strings list ([count, (off, len)…]) read from the table. */
const strings = (ref: number) => Array.from({ length: t(ref) }, (_, k) => text(t(ref + 1 + 2 * k), t(ref + 2 + 2 * k)));

test('the runtime compiles in the layout constants the emitter uses', () => {
  for (const n of NAMES) assert.is(wasm[`constant_${n}`](), layout[n], n);
});

test('keyHash (runtime) = tableHash (compiler) for every length 0…80 and for UTF-8 keys', () => {
  const keys: Uint8Array[] = [];
  for (let n = 0; n <= 80; n++) keys.push(Uint8Array.from({ length: n }, (_, i) => (i * 151 + n * 31 + 7) & 0xff));
  for (const s of ['', 'GET', 'corp.test', '/ns/web/sa/frontend', 'héllo wörld ✓', '\u0000\u00ff', 'x-tenant']) keys.push(Buffer.from(s, 'utf8'));
  for (const k of keys) {
    setKey(k);
    const hash = wasm.probeKeyHash(k.length) >>> 0; // a u32 comes back to JavaScript as a signed i32
    assert.is(hash, tableHash(k), `key of ${k.length} bytes: ${Buffer.from(k).toString('hex')}`);
  }
});

test('header: counts, mode and service as the emitter wrote them', () => {
  const p = compiled.plan;
  assert.is(t(layout.H_RULE_COUNT), p.rules.length);
  assert.is(t(layout.H_SLOT_COUNT), p.slots.length);
  assert.is(t(layout.H_DRY_RUN), 1);
  assert.is(text(t(layout.H_SERVICE), t(layout.H_SERVICE_LEN)), p.service);
  assert.is(t(layout.H_METHOD_LISTS), 1, 'more than 31 methods: atoms list method ids');
  assert.equal(strings(t(layout.H_STRIP)), ['x-a', 'x-b']);
});

test('hash tables: the runtime finds every key the emitter placed, with its value, and no other', () => {
  const p = compiled.plan;
  const methods = [...new Set(p.routes.atoms.flatMap((a) => a.methods ?? []))].sort();
  assert.is(methods.length, METHODS.length);
  methods.forEach((m, id) => {
    const at = find(t(layout.H_METHODS), m);
    assert.ok(at >= 0, `method ${m} not found`);
    assert.is(t(at), id, m);
  });
  assert.is(find(t(layout.H_METHODS), 'GET'), -1);
  for (const [td, d] of p.principals.domains) {
    const at = find(t(layout.H_PRINCIPALS), td);
    assert.ok(at >= 0, `trust domain ${td} not found`);
    const domain = t(at);
    for (const [path, rules] of d.exact) {
      const hit = find(t(domain), path);
      assert.ok(hit >= 0, `${td}${path} not found`);
      assert.equal(items(t(hit)), rules, `${td}${path}`);
    }
    assert.is(find(t(domain), '/ns/nobody/sa/x'), -1);
  }
  assert.is(find(t(layout.H_PRINCIPALS), 'evil.test'), -1);
});

test('records: the runtime reads each rule and slot as the emitter laid it out', () => {
  const p = compiled.plan;
  p.rules.forEach((r, i) => {
    const flags = wasm.rule(i, 0);
    assert.is((flags & layout.RULE_DENY) !== 0, r.effect === 'deny', `${r.id} deny`);
    assert.is((flags & layout.RULE_ANY_CALLER) !== 0, r.from === null, `${r.id} any caller`);
    assert.is((flags & layout.RULE_HAS_WHEN) !== 0, r.when !== null, `${r.id} when`);
    assert.is(text(wasm.rule(i, 1), wasm.rule(i, 2)), JSON.stringify(r.id).slice(1, -1));
  });
  assert.equal(p.slots.map((s) => s.kind), ['header', 'query', 'claim']);
  const slot = (i: number, f: number) => t(t(layout.H_SLOTS) + i * layout.SLOT_STRIDE + f);
  assert.equal([slot(0, 0), text(slot(0, 1), slot(0, 2))], [layout.SLOT_HEADER, 'x-tenant']);
  assert.equal([slot(1, 0), text(slot(1, 1), slot(1, 2))], [layout.SLOT_QUERY, 'q']);
  assert.equal([slot(2, 0), strings(slot(2, 1))], [layout.SLOT_CLAIM, ['org', 'id']]);
});

test('scratch: what install() lays out fits in what the emitter reserved', () => {
  const reserved = Number(/export const SCRATCH = memory\.data\((\d+)\);/.exec(compiled.as)?.[1]);
  assert.ok(reserved > 0);
  assert.ok(wasm.scratchUsed() <= reserved, `install uses ${wasm.scratchUsed()} bytes, the emitter reserved ${reserved}`);
});

test.run();
