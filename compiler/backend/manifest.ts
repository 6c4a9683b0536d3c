/**
 * `<name>.manifest.json`, written next to `<name>.wasm` by `palisade compile` and read by
 * envoy/manifest.ts (name, service, wasm.sha256, wasm.file).
 */
import { createHash } from 'node:crypto';
import type { Plan } from '../plan/plan.ts';
import type { LayerSource } from '../frontend/ast.ts';
import { ABI_VERSION, COMPILER_VERSION } from './toolchain.ts';

export interface Manifest {
  name: string;
  service: string;
  mode: Plan['mode'];
  source: { file: string; sha256: string };
  wasm: { file: string; sha256: string; bytes: number };
  compiler: { name: 'palisade'; version: string };
  /** The proxy-wasm ABI the filter exports (`proxy_abi_version_0_2_1`). */
  abi: typeof ABI_VERSION;
  /** Rules in the policy, and rules left after optimization (the others can never apply). */
  rules: { total: number; live: number };
  /** A policy composed from layers: each layer's file, sha256 and scope, root first, the service's own (`source`) last. */
  layers?: LayerSource[];
}

export const sha256 = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');

export function manifestFor(p: Plan, totalRules: number, wasm: Uint8Array, layers?: LayerSource[]): Manifest {
  const manifest: Manifest = {
    name: p.name,
    service: p.service,
    mode: p.mode,
    source: { ...p.source },
    wasm: { file: `${p.name}.wasm`, sha256: sha256(wasm), bytes: wasm.length },
    compiler: { name: 'palisade', version: COMPILER_VERSION },
    abi: ABI_VERSION,
    rules: { total: totalRules, live: p.rules.length },
  };
  if (layers) manifest.layers = layers.map((l) => ({ ...l }));
  return manifest;
}
