/**
 * AssemblyScript → `.wasm` through the asc API, with an in-memory file system: the runtime,
 * the fixed entry point and the table layout they share with the emitter are read from this
 * repository, the generated policy module is supplied as `filters/policy/generated.ts`, and
 * the binary is captured instead of written.
 * asc runs in a worker thread (compiler/backend/asc-worker.mjs) outside the tsx loader, which would
 * otherwise spend seconds transforming asc's and binaryen's JavaScript in every process.
 *
 * The compiler options live in asconfig.json (target `release`), so running asc by hand on
 * `palisade compile --emit as` output builds the same binary. Why each (all deterministic:
 * the same source always gives the same bytes):
 * - `runtime: stub`: a bump allocator without GC. The filter holds no heap objects across
 *   callbacks and resets the heap at the start of every request (filters/policy/exports.ts), so
 *   a collector would only add code and pauses; memory stays at one request's high mark.
 * - `use: abort=…`: Envoy provides no `env.abort`; ours logs through proxy_log and traps.
 * - `exportStart: _initialize`: no wasm start section (Envoy calls `_initialize`).
 * - `optimizeLevel: 3` with `shrinkLevel: 1`: fast code; the policy tables are data segments either way.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path, { join } from 'node:path';
import { Worker } from 'node:worker_threads';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The asc options (target `release`), read with the sources and handed to asc as a file. */
const CONFIG = 'asconfig.json';
const ENTRY = 'filters/policy/index.ts';
export const GENERATED = 'filters/policy/generated.ts';
/** The table layout constants, compiled into the filter as well as imported by emit.ts. */
const LAYOUT = 'compiler/backend/table-layout.ts';
/** The request limits, enforced by the filter and checked against by the frontend. */
const REQUEST_LIMITS = 'compiler/frontend/request-limits.ts';
/** The fingerprint's lifetime and clock skew, checked by the filter as by the sidecar. */
const FINGERPRINT_LIMITS = 'spiffe/fingerprint-limits.ts';
const FILES = [CONFIG, LAYOUT, REQUEST_LIMITS, FINGERPRINT_LIMITS];
const FOLDERS = ['runtime', 'filters'];
/** Every file and folder of this repository a filter build reads (asc run by hand needs the same). */
export const LIBRARY = [...FILES, ...FOLDERS];

/** The files, and the folders' AssemblyScript, read once per process. */
let library: Map<string, string> | null = null;
function sources(): Map<string, string> {
  if (!library) {
    library = new Map(FILES.map((f) => [f, readFileSync(join(ROOT, f), 'utf8')]));
    for (const dir of FOLDERS) readTree(dir, library);
  }
  return library;
}

/** Adds `dir`'s TypeScript (the generated policy module excepted) to `into`, by repository path. */
function readTree(dir: string, into: Map<string, string>): void {
  for (const f of readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })) {
    const name = `${dir}/${f.split(path.sep).join('/')}`;
    if (name.endsWith('.ts') && name !== GENERATED) into.set(name, readFileSync(join(ROOT, dir, f), 'utf8'));
  }
}

/**
 * sha256 over what every filter is built from besides its policy: asconfig.json, the runtime
 * and the entry points, and the compiler's own TypeScript (its version names a release, not
 * a checkout's edits to the emitter).
 */
export function libraryDigest(): string {
  const files = new Map(sources());
  readTree('compiler', files);
  const hash = createHash('sha256');
  for (const [name, text] of [...files].sort(([a], [b]) => (a < b ? -1 : 1))) hash.update(`${name}\0${text}\0`);
  return hash.digest('hex');
}

export const ASC_FLAGS = ['--config', CONFIG, '--target', 'release', '--noColors'];

export class BuildError extends Error {}

/** One asc worker per process, started on first compile (not on every CLI start); it never keeps the process alive when idle. */
let worker: Worker | null = null;
let nextId = 0;
const pending = new Map<number, { resolve: (w: Uint8Array) => void; reject: (e: Error) => void }>();

function ascWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(new URL('./asc-worker.mjs', import.meta.url), { execArgv: [] });
  w.on('message', (m: { id: number; wasm?: Uint8Array; error?: string }) => {
    const job = pending.get(m.id);
    pending.delete(m.id);
    if (pending.size === 0) w.unref();
    if (m.wasm) job?.resolve(new Uint8Array(m.wasm));
    else job?.reject(new BuildError(m.error ?? 'asc failed'));
  });
  w.on('error', (err) => {
    for (const job of pending.values()) job.reject(new BuildError(`asc worker failed: ${err.message}`));
    pending.clear();
    worker = null;
  });
  return (worker = w);
}

/** Compiles the generated policy module with the runtime into wasm bytes. */
export function buildWasm(generated: string): Promise<Uint8Array> {
  return buildEntry(ENTRY, { [GENERATED]: generated });
}

/**
 * Compiles a fixed entry point under filters/ with the runtime (same flags as every policy
 * filter); `extra` supplies in-memory modules such as the generated policy.
 */
export function buildEntry(entry: string, extra: Record<string, string> = {}): Promise<Uint8Array> {
  const files = new Map(sources());
  for (const [name, text] of Object.entries(extra)) files.set(name, text);
  const w = ascWorker();
  w.ref(); // a pending compilation keeps the process alive
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    w.postMessage({ id, files: [...files], args: [entry, '--outFile', 'filter.wasm', ...ASC_FLAGS] });
  });
}
