/**
 * AssemblyScript → `.wasm` through the asc API, with an in-memory file system: the runtime
 * and the fixed entry point are read from this repository, the generated policy module is
 * supplied as `filters/policy.generated.ts`, and the binary is captured instead of written.
 *
 * Choices (all deterministic: the same source always gives the same bytes):
 * - `--runtime stub`: a bump allocator without GC. The filter holds no heap objects across
 *   callbacks and resets the heap at the start of every request (runtime/exports.ts), so
 *   a collector would only add code and pauses; memory stays at one request's high mark.
 * - `--use abort=…`: Envoy provides no `env.abort`; ours logs through proxy_log and traps.
 * - `--exportStart _initialize`: no wasm start section (Envoy calls `_initialize`).
 * - `-O3` with `--shrinkLevel 1`: fast code; the policy tables are data segments either way.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ENTRY = 'filters/policy.ts';
export const GENERATED = 'filters/policy.generated.ts';

/** The runtime and the fixed entry points (filters/), read once per process. */
let library: Map<string, string> | null = null;
function sources(): Map<string, string> {
  if (!library) {
    library = new Map();
    for (const dir of ['runtime', 'filters']) {
      for (const f of readdirSync(join(ROOT, dir))) if (f.endsWith('.ts')) library.set(`${dir}/${f}`, readFileSync(join(ROOT, dir, f), 'utf8'));
    }
  }
  return library;
}

export const ASC_FLAGS = [
  '--runtime', 'stub',
  '--use', 'abort=runtime/abort/abort',
  '--exportStart', '_initialize',
  '--optimizeLevel', '3', '--shrinkLevel', '1',
  '--noColors',
];

export class BuildError extends Error {}

/** asc (with binaryen) takes seconds and much memory to load: only when compiling, not on every CLI start. */
const loadAsc = () => import('assemblyscript/asc').then((m) => m.default);

/** Compiles the generated policy module with the runtime into wasm bytes. */
export function buildWasm(generated: string): Promise<Uint8Array> {
  return buildEntry(ENTRY, { [GENERATED]: generated });
}

/**
 * Compiles a fixed entry point under filters/ with the runtime (same flags as every policy
 * filter); `extra` supplies in-memory modules such as the generated policy.
 */
export async function buildEntry(entry: string, extra: Record<string, string> = {}): Promise<Uint8Array> {
  const files = sources();
  const asc = await loadAsc();
  let wasm: Uint8Array | null = null;
  const stderr = asc.createMemoryStream();
  const result = await asc.main([entry, '--outFile', 'filter.wasm', ...ASC_FLAGS], {
    stdout: asc.createMemoryStream(),
    stderr,
    readFile: (name: string) => {
      const file = name.replace(/^\.\//, '');
      return Object.hasOwn(extra, file) ? extra[file]! : files.get(file) ?? null;
    },
    writeFile: (name: string, contents: Uint8Array | string) => {
      if (name.endsWith('.wasm') && typeof contents !== 'string') wasm = contents;
    },
    listFiles: () => [],
  });
  if (result.error || !wasm) throw new BuildError(`asc failed: ${result.error?.message ?? ''}\n${stderr.toString()}`);
  return wasm;
}
