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

/** Calls every restriction allows. */
const ALWAYS_ALLOWED: ReadonlySet<string> = new Set([...DURING_MALLOC.allowed].filter((key) => DURING_START.allowed.has(key)));

/** Thrown into the module by a host call it may not make now: a trap, which fails the VM. */
export class RestrictedCall extends Error {}

type HostFunction = (...args: any[]) => number | void;

/**
 * Every import checks the restriction in force before it runs, as cpp-host's V8 wrapper does.
 * The wrapper takes exactly the import's parameters: V8 calls a JS import fastest when the
 * arities match, and imports sit on the per-request path.
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
      if (ALWAYS_ALLOWED.has(key)) {
        guarded[name] = fn; // logging and the clock: no check on the per-request path
        continue;
      }
      guarded[name] = guard(fn, key, state);
    }
    out[module] = guarded;
  }
  return out;
}

/** `fn` behind the check; the allowlist is consulted only while a restriction is in force. */
function guard(fn: HostFunction, key: string, state: { restriction: Restriction | null }): HostFunction {
  const refuse = (): void => {
    const r = state.restriction!;
    if (!r.allowed.has(key)) throw new RestrictedCall(`restricted_callback: ${key} may not be called during ${r.phase}`);
  };
  switch (fn.length) {
    case 0: return () => (state.restriction !== null && refuse(), fn());
    case 1: return (a) => (state.restriction !== null && refuse(), fn(a));
    case 2: return (a, b) => (state.restriction !== null && refuse(), fn(a, b));
    case 3: return (a, b, c) => (state.restriction !== null && refuse(), fn(a, b, c));
    case 4: return (a, b, c, d) => (state.restriction !== null && refuse(), fn(a, b, c, d));
    case 5: return (a, b, c, d, e) => (state.restriction !== null && refuse(), fn(a, b, c, d, e));
    default: return (...args) => (state.restriction !== null && refuse(), fn(...args)); // only the rare calls take more
  }
}
