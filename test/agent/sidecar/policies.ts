/** Real compiled filters for the sidecar tests: fixtures compiled once per run (test/support/compiled.ts). */
import { fileURLToPath } from 'node:url';
import { loadFilter } from '../../../host/filter.ts';
import type { FilterLoader } from '../../../agent/sidecar/filter-slot.ts';
import { compiledFile } from '../../support/compiled.ts';

export const fixture = (name: string) => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));

/** Compiles `test/agent/sidecar/fixtures/<name>.policy.json` (once). */
export async function compiled(name: 'card' | 'ops-only'): Promise<Uint8Array> {
  return (await compiledFile(fixture(`${name}.policy.json`))).wasm;
}

/** The same module with a custom section added: other bytes (and sha256), same behaviour. */
export function variant(wasm: Uint8Array, tag: string): Uint8Array {
  const name = Buffer.from(tag);
  const payload = Buffer.concat([Buffer.from([name.length]), name]);
  return Buffer.concat([wasm, Buffer.from([0, payload.length]), payload]);
}

export const loadStrict: FilterLoader = (wasm) => loadFilter(wasm);
