// The proxy-wasm exports every Palisade filter has in common (ABI 0.2.1): the version
// marker Envoy looks for, the allocator it writes returned values into (the per-request
// bump heap; see exports.ts), and proxy_on_vm_start. proxy_on_context_create is not
// exported: no filter of ours keeps per-context state, and Envoy skips it when absent.
// Entry points re-export this module (`export * from "../../runtime/lifecycle"`).

export function proxy_abi_version_0_2_1(): void {}

export function proxy_on_memory_allocate(size: usize): usize { return heap.alloc(size); }
export function malloc(size: usize): usize { return heap.alloc(size); }

export function proxy_on_vm_start(rootId: i32, vmConfigSize: i32): bool { return true; }
