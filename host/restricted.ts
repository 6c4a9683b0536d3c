/**
 * proxy-wasm-cpp-host's restricted callbacks (src/wasm.cc startVm, include/proxy-wasm/wasm.h
 * allocMemory; the V8 runtime traps any other host call with "restricted_callback"): while
 * the module runs `_initialize` no context exists, and while it runs its allocator for the
 * host it must not re-enter the host. The lists are what every cpp-host release since the
 * restriction appeared (2022) allows; later releases allow more (emscripten memory growth
 * since 2025, the Go runtime's WASI calls since 2026), which a filter must not rely on if it
 * is to run in the Envoy a user has.
 */
export interface Restriction {
  /** What the module is running: named in the failure. */
  phase: string;
  allowed: ReadonlySet<string>;
}

const wasi = (...names: string[]): string[] => names.flatMap((n) => [`wasi_unstable.${n}`, `wasi_snapshot_preview1.${n}`]);

export const DURING_START: Restriction = {
  phase: '_initialize',
  allowed: new Set([
    'env.proxy_log',
    ...wasi('fd_write', 'args_sizes_get', 'args_get', 'environ_sizes_get', 'environ_get', 'fd_prestat_get', 'fd_prestat_dir_name', 'clock_time_get', 'random_get'),
  ]),
};

export const DURING_MALLOC: Restriction = {
  phase: 'malloc',
  allowed: new Set(['env.proxy_log', ...wasi('fd_write', 'clock_time_get')]),
};

/** Thrown into the module by a host call it may not make now: a trap, which fails the VM. */
export class RestrictedCall extends Error {}

/**
 * The first statement of every import but the three every restriction allows (proxy_log,
 * fd_write, clock_time_get: the per-request path logs every decision), as cpp-host's V8
 * wrapper checks before each call; test/host/fidelity.test.ts calls every import Envoy
 * links under each restriction, so an import without it fails there. It sits in each
 * import's own body, not in a wrapper around it: a wrapper is one more JS call per host
 * call, and V8 could not inline the import into it (every wrapper shared one call site).
 * The wrapper was estimated at 2–4% of a decision's p50; after the move, bench/decision.ts
 * and bench:instructions showed no difference beyond their noise. Here it is one field read
 * when no restriction is in force, and the key is built only to refuse.
 */
export function refuseIfRestricted(host: { readonly restriction: Restriction | null }, module: string, name: string): void {
  const r = host.restriction;
  if (r === null) return;
  const key = `${module}.${name}`;
  if (!r.allowed.has(key)) throw new RestrictedCall(`restricted_callback: ${key} may not be called during ${r.phase}`);
}

