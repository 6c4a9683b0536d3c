/**
 * The egress fingerprint filter (filters/egress/index.ts) as a `.wasm`: a fixed entry point,
 * compiled with exactly the asc settings of every policy filter (compiler/backend/build.ts), so
 * the same sources always give the same bytes. `npm run build:egress` writes
 * build/egress.wasm, where `palisade envoy bootstrap` points Envoy's outbound listener.
 *
 *   node --import tsx compiler/backend/egress.ts [out.wasm]
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildEntry } from './build.ts';
import { writeFileAtomic } from '../../platform/files.ts';

export const EGRESS_ENTRY = 'filters/egress/index.ts';
export const EGRESS_WASM = 'build/egress.wasm';

let built: Promise<Uint8Array> | undefined;

/** The filter's bytes (compiled once per process). */
export function buildEgressFilter(): Promise<Uint8Array> {
  built ??= buildEntry(EGRESS_ENTRY);
  return built;
}

/** Writes the filter atomically (write, then rename: Envoy never reads half a file). */
export async function writeEgressFilter(out: string = EGRESS_WASM): Promise<{ path: string; sha256: string; bytes: number }> {
  const wasm = await buildEgressFilter();
  const target = path.resolve(out);
  writeFileAtomic(target, wasm);
  return { path: target, sha256: createHash('sha256').update(wasm).digest('hex'), bytes: wasm.length };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const written = await writeEgressFilter(process.argv[2]);
  process.stdout.write(`${written.path} ${written.bytes} bytes sha256:${written.sha256}\n`);
}
