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
