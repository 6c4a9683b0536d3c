/**
 * Compiled policies for the test run, each built once: several suites compile the same
 * policies (the card-service example, the sidecar fixtures). The key is what decides the
 * output: the compiler version and the digest of the file name (it is in the manifest) and
 * the source text.
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
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { deserialize, serialize } from 'node:v8';
import { compilePolicy, type Compiled } from '../../compiler/index.ts';
import { COMPILER_VERSION } from '../../compiler/backend/toolchain.ts';
import { writeFileAtomic } from '../../platform/files.ts';

const built = new Map<string, Promise<Compiled>>();

const compileKey = (file: string, text: string): string =>
  createHash('sha256').update(COMPILER_VERSION).update('\0').update(file).update('\0').update(text).digest('hex');

async function compileOrThrow(file: string, text: string): Promise<Compiled> {
  const r = await compilePolicy(file, text);
  if (!r.ok) throw new Error(`${file} does not compile:\n${r.diagnostics.map((d) => d.message).join('\n')}`);
  return r;
}

/** Another worker's build of this run, or a new one (then stored for the others). */
async function sharedBuild(key: string, file: string, text: string): Promise<Compiled> {
  const runDir = process.env.PALISADE_TEST_RUN_DIR;
  if (!runDir) return compileOrThrow(file, text);
  const entry = path.join(runDir, 'compiled', `${key}.v8`);
  try {
    return deserialize(readFileSync(entry)) as Compiled;
  } catch {
    const r = await compileOrThrow(file, text);
    writeFileAtomic(entry, serialize(r), 0o600);
    return r;
  }
}

/** The policy file compiled (once per key); each caller gets its own copy of the wasm bytes. */
export async function compiledFile(file: string): Promise<Compiled> {
  const text = await readFile(file, 'utf8');
  const key = compileKey(file, text);
  let compiled = built.get(key);
  if (!compiled) built.set(key, (compiled = sharedBuild(key, file, text)));
  const r = await compiled;
  return { ...r, wasm: r.wasm.slice() };
}
