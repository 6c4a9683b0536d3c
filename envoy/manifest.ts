import { readFileSync } from 'node:fs';
import path from 'node:path';

/** What Envoy configuration needs from a compiled policy's `<name>.manifest.json`. */
export interface PolicyArtifact {
  name: string;
  /** Absolute path of the compiled filter, `<dir>/<name>.wasm` next to the manifest. */
  wasmPath: string;
  /** sha256 (hex) of the .wasm bytes as the compiler recorded it. */
  sha256: string;
  /** The protected service's SPIFFE ID, when the manifest records it. */
  service?: string;
}

export class ManifestError extends Error {}

const NAME = /^[a-z0-9-]+$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** Reads a manifest written by `palisade compile` (compiler/backend/manifest.ts): name, service, wasm.file, wasm.sha256. */
export function readManifest(manifestPath: string): PolicyArtifact {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(manifestPath, 'utf8'));
  } catch (err) {
    throw new ManifestError(`${manifestPath}: cannot read policy manifest: ${(err as Error).message}`);
  }
  const m = (typeof doc === 'object' && doc !== null ? doc : {}) as { name?: unknown; service?: unknown; wasm?: { file?: unknown; sha256?: unknown } };
  if (typeof m.name !== 'string' || !NAME.test(m.name)) throw new ManifestError(`${manifestPath}: manifest has no valid policy "name"`);
  const sha256 = m.wasm?.sha256;
  if (typeof sha256 !== 'string' || !SHA256.test(sha256)) throw new ManifestError(`${manifestPath}: manifest has no "wasm.sha256"`);
  const file = typeof m.wasm?.file === 'string' ? m.wasm.file : `${m.name}.wasm`;
  if (path.basename(file) !== file) throw new ManifestError(`${manifestPath}: "wasm.file" must name a file beside the manifest`);
  const artifact: PolicyArtifact = { name: m.name, sha256, wasmPath: path.resolve(path.dirname(manifestPath), file) };
  if (typeof m.service === 'string') artifact.service = m.service;
  return artifact;
}
