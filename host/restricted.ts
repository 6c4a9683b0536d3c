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

type HostFunction = (...args: any[]) => number | void;

/**
 * Every import checks the restriction in force before it runs, as cpp-host's V8 wrapper does.
 * Fixed parameters instead of a rest array: imports sit on the per-request path, and no
 * proxy-wasm import takes more than 12 arguments.
 */
export function restrictable(
  imports: Record<string, Record<string, HostFunction>>,
  state: { restriction: Restriction | null },
): WebAssembly.Imports {
  const out: WebAssembly.Imports = {};
  for (const [module, functions] of Object.entries(imports)) {
    const guarded: Record<string, HostFunction> = {};
    for (const [name, fn] of Object.entries(functions)) {
      const key = `${module}.${name}`;
      guarded[name] = (a?: any, b?: any, c?: any, d?: any, e?: any, f?: any, g?: any, h?: any, i?: any, j?: any, k?: any, l?: any) => {
        const r = state.restriction;
        if (r !== null && !r.allowed.has(key)) throw new RestrictedCall(`restricted_callback: ${key} may not be called during ${r.phase}`);
        return fn(a, b, c, d, e, f, g, h, i, j, k, l);
      };
    }
    out[module] = guarded;
  }
  return out;
}
