/**
 * Compiled filters for `palisade test` and `palisade eval`, cached on disk so an unchanged
 * policy is not rebuilt (an AssemblyScript start costs seconds). An entry is keyed by
 * sha256 over everything the wasm is built from: the compiler version, the AssemblyScript
 * version, the runtime and entry-point sources and the compiler's own sources (a changed
 * runtime or emitter in a checkout must not serve an old filter) and the policy's exact bytes. Only successful builds are stored.
 *
 * The directory is `$PALISADE_CACHE_DIR`, else `$XDG_CACHE_HOME/palisade/filters`, else
 * `~/.cache/palisade/filters`. A filter from the cache is what the tests then vouch for, so
 * the cache is used only when the directory is ours alone: created 0700, and refused (with
 * a warning, then compiled without it) when it is a symlink, belongs to another user or is
 * writable by group or others.
 */
import { lstatSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { compilePolicy } from '../compiler/index.ts';
import type { Diagnostic } from '../compiler/frontend/ast.ts';
import { libraryDigest } from '../compiler/backend/build.ts';
import { sha256 } from '../compiler/backend/manifest.ts';
import { ASC_VERSION, COMPILER_VERSION } from '../compiler/backend/toolchain.ts';
import { writeFileAtomic } from '../platform/files.ts';

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.PALISADE_CACHE_DIR) return path.resolve(env.PALISADE_CACHE_DIR);
  return path.join(env.XDG_CACHE_HOME || path.join(homedir(), '.cache'), 'palisade', 'filters');
}

export type CachedCompile = { ok: true; wasm: Uint8Array; cached: boolean } | { ok: false; diagnostics: Diagnostic[] };

/**
 * The policy's filter: from the cache when `useCache` and present, else compiled (and then
 * stored). `warn` receives one line when the cache directory is refused.
 */
export async function compileWithCache(file: string, text: string, useCache: boolean, warn: (line: string) => void): Promise<CachedCompile> {
  const dir = useCache ? usableDir(cacheDir(), warn) : null;
  const entry = dir && path.join(dir, `${cacheKey(text)}.wasm`);
  if (entry) {
    const wasm = readIfPresent(entry);
    if (wasm) return { ok: true, wasm, cached: true };
  }
  const result = await compilePolicy(file, text);
  if (!result.ok) return result;
  if (entry) {
    try {
      writeFileAtomic(entry, result.wasm, 0o600);
    } catch (err) {
      warn(`cannot write to the filter cache ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return { ok: true, wasm: result.wasm, cached: false };
}

let library: string | null = null;

export function cacheKey(policyText: string): string {
  library ??= libraryDigest();
  return sha256(JSON.stringify({ compiler: COMPILER_VERSION, asc: ASC_VERSION, library, policy: sha256(policyText) }));
}

/** The directory, created 0700 when absent; null (after a warning) when it is not ours alone. */
function usableDir(dir: string, warn: (line: string) => void): string | null {
  const refuse = (why: string) => (warn(`not using the filter cache ${dir}: ${why}`), null);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    if (!st.isDirectory()) return refuse('not a directory');
    if (process.getuid && st.uid !== process.getuid()) return refuse('owned by another user');
    if (st.mode & 0o022) return refuse('writable by group or others');
    return dir;
  } catch (err) {
    return refuse((err as NodeJS.ErrnoException).code ?? (err as Error).message);
  }
}

function readIfPresent(file: string): Uint8Array | null {
  try {
    return readFileSync(file);
  } catch {
    return null;
  }
}
