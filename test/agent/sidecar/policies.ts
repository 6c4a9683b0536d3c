/** Real compiled filters for the sidecar tests: fixtures compiled once per process. */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { compilePolicy } from '../../../compiler/index.ts';
import { loadFilter } from '../../../host/filter.ts';
import type { FilterLoader } from '../../../agent/sidecar/filter-slot.ts';

const cache = new Map<string, Promise<Uint8Array>>();

export const fixture = (name: string) => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));

/** Compiles `test/agent/sidecar/fixtures/<name>.policy.json` (once). */
export function compiled(name: 'card' | 'ops-only'): Promise<Uint8Array> {
  let wasm = cache.get(name);
  if (!wasm) {
    wasm = (async () => {
      const file = fixture(`${name}.policy.json`);
      const result = await compilePolicy(file, await readFile(file, 'utf8'));
      if (!result.ok) throw new Error(result.diagnostics.map((d) => d.message).join('\n'));
      return result.wasm;
    })();
    cache.set(name, wasm);
  }
  return wasm;
}

/** The same module with a custom section added: other bytes (and sha256), same behaviour. */
export function variant(wasm: Uint8Array, tag: string): Uint8Array {
  const name = Buffer.from(tag);
  const payload = Buffer.concat([Buffer.from([name.length]), name]);
  return Buffer.concat([wasm, Buffer.from([0, payload.length]), payload]);
}

export const loadStrict: FilterLoader = (wasm) => loadFilter(wasm);
