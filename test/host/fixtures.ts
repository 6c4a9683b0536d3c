/**
 * Test fixtures for the host: the multipurpose AssemblyScript filter, built once per test run
 * through the compiler's asc worker with the options of every policy filter (so its `abort`
 * is the runtime's, as in a real filter), and tiny hand-assembled modules for link-time refusals.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { builtEntry } from '../support/compiled.ts';

const ENTRY = 'test/fixtures/host/filter.ts';
/** The fixture filter's wasm bytes (compiled once per test run). */
export function fixtureFilter(): Promise<Uint8Array> {
  return builtEntry(ENTRY, { [ENTRY]: readFileSync(fileURLToPath(new URL(`../../${ENTRY}`, import.meta.url)), 'utf8') });
}

type Val = 'i32' | 'i64';
const VAL: Record<Val, number> = { i32: 0x7f, i64: 0x7e };

export interface TinyModule {
  imports?: { module: string; name: string; params: Val[]; results: Val[] }[];
  /**
   * Exported functions (a result makes them return 0). `calls`: imports (by index) the body
   * calls first, with these constant arguments, dropping what they return.
   */
  exports?: { name: string; params?: Val[]; results?: Val[]; calls?: { import: number; args: number[] }[] }[];
  memory?: boolean;
  start?: boolean;
}

/** Assembles a minimal module: imported and exported functions with the given signatures. */
export function tinyModule(spec: TinyModule): Uint8Array {
  const imports = spec.imports ?? [];
  const exports = spec.exports ?? [];
  const types = [...imports, ...exports.map((e) => ({ params: e.params ?? [], results: e.results ?? [] }))];
  const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const section = (id: number, body: number[]) => out.push(id, ...uleb(body.length), ...body);
  section(1, vec(types.map((t) => [0x60, ...vec(t.params.map((p) => [VAL[p]])), ...vec(t.results.map((r) => [VAL[r]]))])));
  if (imports.length) section(2, vec(imports.map((imp, k) => [...str(imp.module), ...str(imp.name), 0x00, ...uleb(k)])));
  section(3, vec(exports.map((_, k) => uleb(imports.length + k))));
  if (spec.memory !== false) section(5, vec([[0x00, 0x01]]));
  const exportEntries = exports.map((e, k) => [...str(e.name), 0x00, ...uleb(imports.length + k)]);
  if (spec.memory !== false) exportEntries.push([...str('memory'), 0x02, 0x00]);
  section(7, vec(exportEntries));
  if (spec.start) section(8, uleb(imports.length)); // the first defined function (must be ()->())
  section(10, vec(exports.map((e) => {
    const calls = (e.calls ?? []).flatMap(({ import: k, args }) => [
      ...args.flatMap((a, n) => [imports[k].params[n] === 'i64' ? 0x42 : 0x41, ...sleb(a)]),
      0x10, ...uleb(k),
      ...(imports[k].results.length ? [0x1a] : []), // drop
    ]);
    const result = (e.results ?? []).length ? [e.results![0] === 'i64' ? 0x42 : 0x41, 0x00] : [];
    const body = [0x00, ...calls, ...result, 0x0b];
    return [...uleb(body.length), ...body];
  })));
  return Uint8Array.from(out);
}

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...out, b];
    out.push(b | 0x80);
  }
}
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const str = (s: string): number[] => vec([...new TextEncoder().encode(s)].map((b) => [b]));

/** The smallest module Envoy accepts: ABI export, memory, malloc. */
export const minimalExports: TinyModule['exports'] = [
  { name: 'proxy_abi_version_0_2_1' },
  { name: 'malloc', params: ['i32'], results: ['i32'] },
];
