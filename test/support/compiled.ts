/**
 * Compiled policies (and fixed entry points) for the test run, each built once: several
 * suites compile the same policies (the card-service example, the sidecar fixtures, the host's
 * fixture filter). The key is what decides the output: the compiler version, the file names
 * (they are in the manifest) and the source texts.
 *
 * Within a process the build is shared in memory. `npm test` runs files in several worker
 * processes (scripts/test.ts) and gives them one directory for this run,
 * `$PALISADE_TEST_RUN_DIR`: a build is also stored there under its key, written to a
 * temporary name and renamed, so another worker reads a whole entry or none (then compiles
 * it itself: two workers missing at once both compile, and both write the same bytes). The
 * directory is created empty for each run and removed after it: every run compiles with the
 * code under test, never with an artifact left by an earlier one.
 *
 * Suites that test the compiler itself (determinism, limits, diagnostics) call compilePolicy.
 * Each caller gets its own copy of the wasm bytes.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { deserialize, serialize } from 'node:v8';
import { compileLayers, compilePolicy, type CompileResult, type Compiled, type LayerText } from '../../compiler/index.ts';
import { buildEntry } from '../../compiler/backend/build.ts';
import { COMPILER_VERSION } from '../../compiler/backend/toolchain.ts';
import { writeFileAtomic } from '../../platform/files.ts';

const built = new Map<string, Promise<unknown>>();

const keyOf = (...parts: string[]): string => {
  const hash = createHash('sha256').update(COMPILER_VERSION);
  for (const part of parts) hash.update('\0').update(part);
  return hash.digest('hex');
};

async function compileOrThrow(what: string, compile: () => Promise<CompileResult>): Promise<Compiled> {
  const r = await compile();
  if (!r.ok) throw new Error(`${what} does not compile:\n${r.diagnostics.map((d) => d.message).join('\n')}`);
  return r;
}

/** Another worker's build of this run, or a new one (then stored for the others). */
async function sharedBuild<T>(key: string, build: () => Promise<T>): Promise<T> {
  const runDir = process.env.PALISADE_TEST_RUN_DIR;
  if (!runDir) return build();
  const entry = path.join(runDir, 'compiled', `${key}.v8`);
  try {
    return deserialize(readFileSync(entry)) as T;
  } catch {
    const r = await build();
    writeFileAtomic(entry, serialize(r), 0o600);
    return r;
  }
}

/** A shared build with wasm bytes of the caller's own. */
const ownCopy = (r: Compiled): Compiled => ({ ...r, wasm: r.wasm.slice() });

/** The build of `key`, once per run (per process, then shared through the run directory). */
function once<T>(key: string, build: () => Promise<T>): Promise<T> {
  let compiled = built.get(key) as Promise<T> | undefined;
  if (!compiled) built.set(key, (compiled = sharedBuild(key, build)));
  return compiled;
}

/** The policy file compiled (once per key); each caller gets its own copy of the wasm bytes. */
export async function compiledFile(file: string): Promise<Compiled> {
  return compiledText(file, await readFile(file, 'utf8'));
}

/** A policy given by text, compiled as the file `file` (once per key). */
export async function compiledText(file: string, text: string): Promise<Compiled> {
  return ownCopy(await once(keyOf('file', file, text), () => compileOrThrow(file, () => compilePolicy(file, text))));
}

/** Layers composed and compiled (once per run for the same files, in the same order), as `compileLayers`. */
export async function compiledLayers(layers: LayerText[]): Promise<Compiled> {
  return ownCopy(await once(keyOf('layers', ...layers.flatMap((l) => [l.file, l.text])), () => compileOrThrow(layers.map((l) => l.file).join(' + '), () => compileLayers(layers))));
}

/** A fixed entry point under filters/ or test/fixtures/ built as `buildEntry` builds it (once per run). */
export async function builtEntry(entry: string, extra: Record<string, string> = {}): Promise<Uint8Array> {
  const wasm = await once(keyOf('entry', entry, JSON.stringify(extra)), () => buildEntry(entry, extra));
  return wasm.slice();
}
