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

/**
 * Reads a manifest written by `palisade compile`. Accepts the wasm digest as `wasm.sha256`,
 * `wasmSha256` or `sha256.wasm`, and the wasm file as `wasm.file`/`wasmFile` or the
 * default `<name>.wasm` beside the manifest.
 */
export function readManifest(manifestPath: string): PolicyArtifact {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(manifestPath, 'utf8'));
  } catch (err) {
    throw new ManifestError(`${manifestPath}: cannot read policy manifest: ${(err as Error).message}`);
  }
  const m = (doc ?? {}) as Record<string, any>;
  const name = m.name ?? m.policy?.name ?? m.policy;
  if (typeof name !== 'string' || !NAME.test(name)) throw new ManifestError(`${manifestPath}: manifest has no valid policy "name"`);
  const sha256 = [m.wasm?.sha256, m.wasmSha256, m.sha256?.wasm].find((v) => typeof v === 'string');
  if (!sha256 || !SHA256.test(sha256)) throw new ManifestError(`${manifestPath}: manifest has no sha256 of the wasm`);
  const file = [m.wasm?.file, m.wasm?.path, m.wasmFile].find((v) => typeof v === 'string') ?? `${name}.wasm`;
  const service = [m.service, m.policy?.service].find((v) => typeof v === 'string');
  return { name, sha256, wasmPath: path.resolve(path.dirname(manifestPath), file), ...(service ? { service } : {}) };
}
