// proxy-wasm ABI 0.2.1: the host functions this runtime uses, all from Envoy's set
// (see /work/shared/reference/envoy-proxy-wasm.md), and thin wrappers over them.
// Every value the host returns is written into memory obtained from our
// proxy_on_memory_allocate, i.e. the per-request arena (see exports.ts).

import { Out } from "./bytes";

@external("env", "proxy_log")
declare function proxy_log(level: i32, ptr: usize, len: usize): i32;
@external("env", "proxy_get_log_level")
declare function proxy_get_log_level(retLevel: usize): i32;
@external("env", "proxy_get_property")
declare function proxy_get_property(pathPtr: usize, pathLen: usize, retPtr: usize, retLen: usize): i32;
@external("env", "proxy_set_property")
declare function proxy_set_property(keyPtr: usize, keyLen: usize, valPtr: usize, valLen: usize): i32;
@external("env", "proxy_get_header_map_pairs")
declare function proxy_get_header_map_pairs(mapType: i32, retPtr: usize, retLen: usize): i32;
@external("env", "proxy_remove_header_map_value")
declare function proxy_remove_header_map_value(mapType: i32, keyPtr: usize, keyLen: usize): i32;
@external("env", "proxy_replace_header_map_value")
declare function proxy_replace_header_map_value(mapType: i32, keyPtr: usize, keyLen: usize, valPtr: usize, valLen: usize): i32;
@external("env", "proxy_get_buffer_bytes")
declare function proxy_get_buffer_bytes(bufType: i32, start: i32, maxSize: i32, retPtr: usize, retLen: usize): i32;
@external("env", "proxy_send_local_response")
declare function proxy_send_local_response(status: i32, detailsPtr: usize, detailsLen: usize, bodyPtr: usize, bodyLen: usize, headersPtr: usize, headersLen: usize, grpcStatus: i32): i32;
@external("env", "proxy_define_metric")
declare function proxy_define_metric(metricType: i32, namePtr: usize, nameLen: usize, retId: usize): i32;
@external("env", "proxy_increment_metric")
declare function proxy_increment_metric(id: i32, offset: i64): i32;
@external("env", "proxy_get_shared_data")
declare function proxy_get_shared_data(keyPtr: usize, keyLen: usize, retPtr: usize, retLen: usize, casPtr: usize): i32;
@external("env", "proxy_set_shared_data")
declare function proxy_set_shared_data(keyPtr: usize, keyLen: usize, valPtr: usize, valLen: usize, cas: u32): i32;
@external("env", "proxy_get_current_time_nanoseconds")
declare function proxy_get_current_time_nanoseconds(retTime: usize): i32;

export const OK: i32 = 0;
export const NOT_FOUND: i32 = 1;
export const CAS_MISMATCH: i32 = 8;
export const LOG_INFO: i32 = 2;
export const LOG_CRITICAL: i32 = 5;
export const REQUEST_HEADERS: i32 = 0;
export const PLUGIN_CONFIGURATION: i32 = 7;
const METRIC_COUNTER: i32 = 0;

/** Out-parameters the host writes into: (pointer, length), or a CAS version, or a time. */
const RET: usize = memory.data(16);

/** A host-provided byte string: `ptr`/`len` after a successful call. */
export let retPtr: usize = 0;
export let retLen: i32 = 0;

function took(status: i32): bool {
  if (status != OK) { retPtr = 0; retLen = 0; return false; }
  retPtr = load<u32>(RET);
  retLen = load<i32>(RET + 4);
  return true;
}

export function log(level: i32, ptr: usize, len: i32): void {
  proxy_log(level, ptr, len);
}

/** Keeps `value` for this request as Envoy's filter state `wasm.<key>`, which access loggers can log. */
export function setProperty(keyPtr: usize, keyLen: i32, valPtr: usize, valLen: i32): void {
  proxy_set_property(keyPtr, keyLen, valPtr, valLen);
}

/**
 * Would the host keep a line at `level`? Asked each time (Envoy's level can change while
 * running), so a caller can skip formatting a line the host would drop; when the host
 * cannot answer, yes.
 */
export function logs(level: i32): bool {
  return proxy_get_log_level(RET) != OK || level >= load<i32>(RET);
}

/** Reads a property (path of NUL-terminated segments); false when absent. */
export function getProperty(pathPtr: usize, pathLen: i32): bool {
  return readProperty(pathPtr, pathLen) == OK;
}

/** Reads a property: OK (the value in retPtr/retLen), NOT_FOUND, or why the host could not serve it (e.g. SERIALIZATION_FAILURE). */
export function readProperty(pathPtr: usize, pathLen: i32): i32 {
  const status = proxy_get_property(pathPtr, pathLen, RET, RET + 4);
  took(status);
  return status;
}

export function getRequestHeaderPairs(): bool {
  return took(proxy_get_header_map_pairs(REQUEST_HEADERS, RET, RET + 4));
}

export function getPluginConfiguration(size: i32): bool {
  return took(proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, RET, RET + 4));
}

export function removeRequestHeader(keyPtr: usize, keyLen: i32): void {
  proxy_remove_header_map_value(REQUEST_HEADERS, keyPtr, keyLen);
}

export function replaceRequestHeader(keyPtr: usize, keyLen: i32, valPtr: usize, valLen: i32): void {
  proxy_replace_header_map_value(REQUEST_HEADERS, keyPtr, keyLen, valPtr, valLen);
}

export function sendLocalResponse(status: i32, bodyPtr: usize, bodyLen: i32, headersPtr: usize, headersLen: i32): void {
  proxy_send_local_response(status, 0, 0, bodyPtr, bodyLen, headersPtr, headersLen, -1);
}

/** Defines a counter; returns its id, or -1 when the host refuses. */
export function defineCounter(namePtr: usize, nameLen: i32): i32 {
  return proxy_define_metric(METRIC_COUNTER, namePtr, nameLen, RET) == OK ? load<i32>(RET) : -1;
}

/** A counter metric by name (tags go in the name, `metric.tag=value`); call at configure time. */
export function defineCounterNamed(name: string): i32 {
  const o = new Out(64).ascii(name);
  return defineCounter(o.ptr, o.len);
}

export function incrementCounter(id: i32): void {
  if (id >= 0) proxy_increment_metric(id, 1);
}

/** Shared data (per VM id, across filter instances): the value in retPtr/retLen and its CAS version in `sharedCas`. */
export let sharedCas: u32 = 0;
export function getSharedData(keyPtr: usize, keyLen: i32): bool {
  const ok = took(proxy_get_shared_data(keyPtr, keyLen, RET, RET + 4, RET + 8));
  sharedCas = ok ? load<u32>(RET + 8) : 0;
  return ok;
}

/** OK, or CAS_MISMATCH when another instance wrote since `cas` (0: unconditional). */
export function setSharedData(keyPtr: usize, keyLen: i32, valPtr: usize, valLen: i32, cas: u32): i32 {
  return proxy_set_shared_data(keyPtr, keyLen, valPtr, valLen, cas);
}

/** Wall-clock seconds (the host's clock; 0 if it refuses). */
export function nowSeconds(): f64 {
  if (proxy_get_current_time_nanoseconds(RET) != OK) return 0;
  return <f64>load<u64>(RET) / 1e9;
}
