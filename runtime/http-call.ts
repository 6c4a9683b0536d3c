// proxy_http_call, its answer and stream continuation (ABI 0.2.1, all in Envoy's set).
// Envoy issues every http_call from the root context and delivers the answer there
// (proxy-wasm-cpp-host exports.cc: `http_call` uses `root_context()`), so a filter must
// remember which stream waits for which token and make that stream effective before it
// touches its headers, replies or continues it.

@external("env", "proxy_http_call")
declare function proxy_http_call(upPtr: usize, upLen: i32, headersPtr: usize, headersLen: i32, bodyPtr: usize, bodyLen: i32, trailersPtr: usize, trailersLen: i32, timeoutMs: u32, tokenPtr: usize): i32;
@external("env", "proxy_continue_stream")
declare function proxy_continue_stream(streamType: i32): i32;
@external("env", "proxy_set_effective_context")
declare function proxy_set_effective_context(contextId: u32): i32;
@external("env", "proxy_get_header_map_value")
declare function proxy_get_header_map_value(mapType: i32, keyPtr: usize, keyLen: i32, retPtr: usize, retLen: usize): i32;
// Also declared by abi.ts (asc links a single import); that file's wrapper reads only the
// plugin configuration.
@external("env", "proxy_get_buffer_bytes")
declare function proxy_get_buffer_bytes(bufType: i32, start: i32, maxSize: i32, retPtr: usize, retLen: usize): i32;

const OK: i32 = 0;
const STREAM_REQUEST: i32 = 0;
const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
const HTTP_CALL_RESPONSE_BODY: i32 = 4;
const RET: usize = memory.data(8);

/** The value read by callResponseHeader/callResponseBody. */
export let answerPtr: usize = 0;
export let answerLen: i32 = 0;

function took(status: i32): bool {
  if (status != OK) { answerPtr = 0; answerLen = 0; return false; }
  answerPtr = load<u32>(RET);
  answerLen = load<i32>(RET + 4);
  return true;
}

/** The token of the call httpCall() started (any u32: Envoy's counters wrap). */
export let callToken: u32 = 0;

/** Starts a call with serialized header pairs; false when the host refuses it. */
export function httpCall(clusterPtr: usize, clusterLen: i32, headersPtr: usize, headersLen: i32, bodyPtr: usize, bodyLen: i32, timeoutMs: u32): bool {
  if (proxy_http_call(clusterPtr, clusterLen, headersPtr, headersLen, bodyPtr, bodyLen, 0, 0, timeoutMs, RET) != OK) return false;
  callToken = load<u32>(RET);
  return true;
}

/** Inside proxy_on_http_call_response: a header of the answer (`:status` included). */
export function callResponseHeader(namePtr: usize, nameLen: i32): bool {
  return took(proxy_get_header_map_value(HTTP_CALL_RESPONSE_HEADERS, namePtr, nameLen, RET, RET + 4));
}

/** Inside proxy_on_http_call_response: the answer's body (`size` from the callback). */
export function callResponseBody(size: i32): bool {
  return took(proxy_get_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, size, RET, RET + 4));
}

export function setEffectiveContext(contextId: u32): bool {
  return proxy_set_effective_context(contextId) == OK;
}

/** Resumes the effective stream's request where the filter paused it. */
export function continueRequest(): void {
  proxy_continue_stream(STREAM_REQUEST);
}

// Streams waiting for an answer: (token, context id) pairs in static memory, because the
// heap is reset by every request while others are still waiting.
const MAX_WAITING: i32 = 4096;
const WAITING: usize = memory.data(MAX_WAITING << 3);
let waitingCount: i32 = 0;

/** Whether one more stream may wait (ask before starting its call). */
export function canAwait(): bool {
  return waitingCount < MAX_WAITING;
}

/** Records that `contextId` waits for `token` (after canAwait()). */
export function awaitCall(token: u32, contextId: u32): void {
  const at = WAITING + (<usize>(waitingCount++) << 3);
  store<u32>(at, token);
  store<u32>(at + 4, contextId);
}

/** Set by takeCaller(). */
export let caller: u32 = 0;

/** Finds (and forgets) the context waiting for `token`; false: that stream is gone. */
export function takeCaller(token: u32): bool {
  const i = find(0, token);
  if (i < 0) return false;
  caller = load<u32>(WAITING + (<usize>i << 3) + 4);
  remove(i);
  return true;
}

export function isWaiting(contextId: u32): bool {
  return find(4, contextId) >= 0;
}

/** A stream that ends while waiting: its answer, when it comes, is dropped. */
export function forget(contextId: u32): void {
  const i = find(4, contextId);
  if (i >= 0) remove(i);
}

function find(field: usize, value: u32): i32 {
  for (let i = 0; i < waitingCount; i++) if (load<u32>(WAITING + (<usize>i << 3) + field) == value) return i;
  return -1;
}

function remove(i: i32): void {
  waitingCount--;
  store<u64>(WAITING + (<usize>i << 3), load<u64>(WAITING + (<usize>waitingCount << 3)));
}
