import { setFlagsFromString } from 'node:v8';

/**
 * `palisade agent` is a long-lived daemon whose requests leave little behind: V8's young
 * generation stays at its initial size (1 MB semi-spaces) instead of growing to 16 MB ones
 * under traffic, which kept ~30 MB more resident after 1,000 requests for no measurable
 * gain per request (bench/startup.ts: the agent's CPU per request is the same). Only the
 * growth factor can still change once the heap exists, so this runs before the agent's
 * modules load (their start-up is what grew it first).
 *
 * Its wasm (the policy filter, undici's HTTP parser) is compiled by TurboFan alone, each
 * function when first called, on the main thread, instead of Liftoff first and TurboFan on
 * V8's background threads once a function is hot. The decisions run the same optimized code
 * (bench/sidecar.ts: the same CPU per request), but the tier-up's ~36 MB of compiler
 * scratch no longer lands in a glibc thread arena, which is not given back to the system:
 * in about half the runs it kept ~10 MB of an idle agent resident (bench/startup.ts: idle
 * RSS 67.5 or 77 MB before, 67.5 every run after). The main thread's arena is trimmed. V8
 * reads the flag when it compiles a module, so it too is set before the agent starts.
 */
export function tuneDaemonHeap(): void {
  setFlagsFromString('--semi-space-growth-factor=1');
  setFlagsFromString('--no-liftoff');
}

/** V8's default --bytecode-old-age (`node --v8-options`): full collections before unused bytecode is dropped. */
const BYTECODE_OLD_AGE = 5;
/** Full collections in the settling pass: enough for bytecode unused since start-up to reach age 1 and be dropped. */
const SETTLING_COLLECTIONS = 3;

/**
 * Called once the agent is ready: collects its start-up garbage now rather than when V8's
 * memory reducer gets to it, ~8 s after the last full collection (the reducer does the same
 * and also releases the young generation's spare half). Start-up leaves what the agent never
 * runs again (the code that parsed flags, joined the CA and compiled the filter) and
 * old-space pages half filled with what it allocated. These collections compact old space
 * as V8 does when optimizing for size, and drop bytecode not run since the previous
 * collection: compiled again from source if it ever runs again, as V8 does for any function
 * idle for five collections. bench/startup.ts: the idle agent ~2 MB smaller 3 s after
 * start, for ~40 ms of CPU once. The flags are V8's defaults again afterwards, so traffic is
 * collected as before.
 *
 * The collection is V8's own %CollectGarbage, reached with natives syntax switched on only
 * while one function is compiled: `--expose-gc` would give gc() only to a new context, which
 * then stays alive through the collections it makes. Where that cannot be compiled (a node
 * with `--disallow-code-generation-from-strings`, a V8 without the function) the agent
 * skips the pass and the memory reducer does it later.
 */
export function settleDaemonHeap(): void {
  let collect: () => void;
  setFlagsFromString('--allow-natives-syntax');
  try {
    collect = new Function('%CollectGarbage(null)') as () => void;
  } catch {
    return;
  } finally {
    setFlagsFromString('--no-allow-natives-syntax');
  }
  setFlagsFromString('--optimize-for-size');
  setFlagsFromString('--bytecode-old-age=1');
  try {
    for (let i = 0; i < SETTLING_COLLECTIONS; i++) collect();
  } finally {
    setFlagsFromString('--no-optimize-for-size');
    setFlagsFromString(`--bytecode-old-age=${BYTECODE_OLD_AGE}`);
  }
}
