/**
 * Compiled policies for the test run, each built once: uvu imports every test file into one
 * process, and several suites compile the same policies (the card-service example, the
 * sidecar fixtures). The key is what decides the output: the compiler version and the digest
 * of the file name (it is in the manifest) and the source text. In memory only: every run
 * compiles with the code under test, never with an artifact left by an earlier one.
 *
 * Suites that test the compiler itself (determinism, limits, diagnostics) call compilePolicy.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { compilePolicy, type Compiled } from '../../compiler/index.ts';
import { COMPILER_VERSION } from '../../compiler/backend/toolchain.ts';

const built = new Map<string, Promise<Compiled>>();

const compileKey = (file: string, text: string): string =>
  createHash('sha256').update(COMPILER_VERSION).update('\0').update(file).update('\0').update(text).digest('hex');

async function compileOrThrow(file: string, text: string): Promise<Compiled> {
  const r = await compilePolicy(file, text);
  if (!r.ok) throw new Error(`${file} does not compile:\n${r.diagnostics.map((d) => d.message).join('\n')}`);
  return r;
}

/** The policy file compiled (once per key); each caller gets its own copy of the wasm bytes. */
export async function compiledFile(file: string): Promise<Compiled> {
  const text = await readFile(file, 'utf8');
  const key = compileKey(file, text);
  let compiled = built.get(key);
  if (!compiled) built.set(key, (compiled = compileOrThrow(file, text)));
  const r = await compiled;
  return { ...r, wasm: r.wasm.slice() };
}
