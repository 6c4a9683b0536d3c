/**
 * The control plane's builds, kept by what they are built from. It compiles the same
 * composition again and again: a rollback returns to sources it compiled before, a GitOps
 * pipeline re-submits every unchanged policy, a change that lost a race is compiled again
 * whole, a layer change recompiles every service below it. A build costs an AssemblyScript
 * run (about a second of CPU); a lookup, a hash of the documents.
 *
 * The key is every input of `compileLayers`: each document's file name and text, in order
 * (the compiler itself does not change within a process). A build is kept as strings, which
 * nobody can alter once handed out. Only successful builds are kept (a failed one costs no
 * AssemblyScript run); the least recently used go first once the kept filters pass
 * MAX_BYTES.
 */
import { createHash } from 'node:crypto';
import { compileLayers, type LayerText, type Manifest } from '../compiler/index.ts';
import type { Diagnostic } from '../compiler/frontend/ast.ts';

export type ServiceBuild = { ok: true; manifest: Manifest; wasmBase64: string } | { ok: false; diagnostics: Diagnostic[] };

const MAX_BYTES = 32 * 1024 * 1024;

interface Kept {
  build: Promise<{ manifest: string; wasmBase64: string } | { diagnostics: Diagnostic[] }>;
  /** The filter's size once built: 0 while it compiles. */
  bytes: number;
}

const kept = new Map<string, Kept>();
let keptBytes = 0;
const counts = { compiled: 0, reused: 0 };

/** Builds run and builds handed out again, since the process started; what is kept now. */
export function buildStats(): { compiled: number; reused: number; kept: number; bytes: number } {
  return { ...counts, kept: kept.size, bytes: keptBytes };
}

/** `layers` compiled, or the same build as the last time these exact documents were. */
export async function buildLayers(layers: LayerText[]): Promise<ServiceBuild> {
  const key = keyOf(layers);
  let entry = kept.get(key);
  if (entry) {
    counts.reused++;
    kept.delete(key); // to the end: most recently used
    kept.set(key, entry);
  } else {
    counts.compiled++;
    entry = { build: build(layers), bytes: 0 };
    kept.set(key, entry);
    settle(key, entry);
  }
  const built = await entry.build;
  return 'diagnostics' in built ? { ok: false, diagnostics: built.diagnostics } : { ok: true, manifest: JSON.parse(built.manifest) as Manifest, wasmBase64: built.wasmBase64 };
}

async function build(layers: LayerText[]) {
  const r = await compileLayers(layers);
  return r.ok ? { manifest: JSON.stringify(r.manifest), wasmBase64: Buffer.from(r.wasm).toString('base64') } : { diagnostics: r.diagnostics };
}

/** Once built: counted and the oldest dropped past the budget; a failure is forgotten. */
function settle(key: string, entry: Kept): void {
  entry.build.then(
    (built) => {
      if (kept.get(key) !== entry) return;
      if ('diagnostics' in built) return void kept.delete(key);
      entry.bytes = built.wasmBase64.length + built.manifest.length;
      keptBytes += entry.bytes;
      for (const [oldKey, old] of kept) {
        if (keptBytes <= MAX_BYTES || old === entry) break;
        kept.delete(oldKey);
        keptBytes -= old.bytes;
      }
    },
    () => {
      if (kept.get(key) === entry) kept.delete(key);
    },
  );
}

function keyOf(layers: LayerText[]): string {
  const hash = createHash('sha256');
  for (const { file, text } of layers) hash.update(`${file.length}:${file}${text.length}:${text}`);
  return hash.digest('hex');
}
