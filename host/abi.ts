/**
 * proxy-wasm ABI 0.2.1 as Envoy links it: the exact import surface (names and signatures),
 * the callbacks it looks for, and the numeric codes both sides agree on.
 * Sources: proxy-wasm/spec abi-versions/v0.2.1, proxy-wasm-cpp-host include/proxy-wasm/exports.h
 * and src/exports.cc, envoyproxy/envoy source/extensions/common/wasm/context.cc.
 */

export const Status = {
  OK: 0,
  NOT_FOUND: 1,
  BAD_ARGUMENT: 2,
  SERIALIZATION_FAILURE: 3,
  PARSE_FAILURE: 4,
  INVALID_MEMORY_ACCESS: 6,
  EMPTY: 7,
  CAS_MISMATCH: 8,
  INTERNAL_FAILURE: 10,
  UNIMPLEMENTED: 12,
} as const;

export const Action = { CONTINUE: 0, PAUSE: 1 } as const;

export const MapType = {
  REQUEST_HEADERS: 0,
  REQUEST_TRAILERS: 1,
  RESPONSE_HEADERS: 2,
  RESPONSE_TRAILERS: 3,
  GRPC_RECEIVE_INITIAL_METADATA: 4,
  GRPC_RECEIVE_TRAILING_METADATA: 5,
  HTTP_CALL_RESPONSE_HEADERS: 6,
  HTTP_CALL_RESPONSE_TRAILERS: 7,
} as const;
export const MAP_TYPE_MAX = 7;

export const BufferType = {
  HTTP_REQUEST_BODY: 0,
  HTTP_RESPONSE_BODY: 1,
  DOWNSTREAM_DATA: 2,
  UPSTREAM_DATA: 3,
  HTTP_CALL_RESPONSE_BODY: 4,
  GRPC_RECEIVE_BUFFER: 5,
  VM_CONFIGURATION: 6,
  PLUGIN_CONFIGURATION: 7,
  CALL_DATA: 8,
} as const;
export const BUFFER_TYPE_MAX = 8;

export const StreamType = { REQUEST: 0, RESPONSE: 1, DOWNSTREAM: 2, UPSTREAM: 3 } as const;

export const LogLevel = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, critical: 5 } as const;
export type LogLevelName = keyof typeof LogLevel;
export const LOG_LEVEL_NAMES = Object.keys(LogLevel) as LogLevelName[];

export const MetricType = { COUNTER: 0, GAUGE: 1, HISTOGRAM: 2 } as const;

/** A wasm function signature written as `params->results`, e.g. `iii->i`, `ij->i`, `i->`. */
export type Signature = string;

const i = (n: number): string => 'i'.repeat(n);
const ret = (n: number): Signature => `${i(n)}->i`;

/** `env` functions Envoy registers (ABI 0.2.1). Every argument and result is i32 except as noted. */
export const ENV_IMPORTS: Record<string, Signature> = {
  proxy_log: ret(3),
  proxy_get_log_level: ret(1),
  proxy_get_status: ret(3),
  proxy_set_property: ret(4),
  proxy_get_property: ret(4),
  proxy_send_local_response: ret(8),
  proxy_get_shared_data: ret(5),
  proxy_set_shared_data: ret(5),
  proxy_register_shared_queue: ret(3),
  proxy_resolve_shared_queue: ret(5),
  proxy_dequeue_shared_queue: ret(3),
  proxy_enqueue_shared_queue: ret(3),
  proxy_get_header_map_value: ret(5),
  proxy_add_header_map_value: ret(5),
  proxy_replace_header_map_value: ret(5),
  proxy_remove_header_map_value: ret(3),
  proxy_get_header_map_pairs: ret(3),
  proxy_set_header_map_pairs: ret(3),
  proxy_get_header_map_size: ret(2),
  proxy_get_buffer_status: ret(3),
  proxy_get_buffer_bytes: ret(5),
  proxy_set_buffer_bytes: ret(5),
  proxy_http_call: ret(10),
  proxy_grpc_call: ret(12),
  proxy_grpc_stream: ret(9),
  proxy_grpc_close: ret(1),
  proxy_grpc_cancel: ret(1),
  proxy_grpc_send: ret(4),
  proxy_set_tick_period_milliseconds: ret(1),
  proxy_get_current_time_nanoseconds: ret(1),
  proxy_define_metric: ret(4),
  proxy_increment_metric: 'ij->i',
  proxy_record_metric: 'ij->i',
  proxy_get_metric: ret(2),
  proxy_set_effective_context: ret(1),
  proxy_done: ret(0),
  proxy_call_foreign_function: ret(6),
  proxy_continue_stream: ret(1),
  proxy_close_stream: ret(1),
  emscripten_notify_memory_growth: 'i->',
  pthread_equal: ret(2),
};

/** WASI preview1 functions Envoy registers under both `wasi_snapshot_preview1` and `wasi_unstable`. */
export const WASI_IMPORTS: Record<string, Signature> = {
  fd_write: ret(4),
  fd_read: ret(4),
  fd_seek: 'ijii->i',
  fd_close: ret(1),
  fd_fdstat_get: ret(2),
  fd_fdstat_set_flags: ret(2),
  fd_prestat_get: ret(2),
  fd_prestat_dir_name: ret(3),
  path_open: 'iiiiijjii->i',
  environ_get: ret(2),
  environ_sizes_get: ret(2),
  args_get: ret(2),
  args_sizes_get: ret(2),
  clock_time_get: 'iji->i',
  random_get: ret(2),
  proc_exit: 'i->',
  sched_yield: ret(0),
  poll_oneoff: ret(4),
};

export const IMPORTS: Record<string, Record<string, Signature>> = {
  env: ENV_IMPORTS,
  wasi_snapshot_preview1: WASI_IMPORTS,
  wasi_unstable: WASI_IMPORTS,
};

/** Callbacks the host calls when exported, with the signature Envoy requires of them. */
export const CALLBACKS: Record<string, Signature> = {
  _initialize: '->',
  malloc: 'i->i',
  proxy_on_memory_allocate: 'i->i',
  proxy_on_context_create: 'ii->',
  proxy_on_vm_start: 'ii->i',
  proxy_on_configure: 'ii->i',
  proxy_on_request_headers: 'iii->i',
  proxy_on_request_body: 'iii->i',
  proxy_on_request_trailers: 'ii->i',
  proxy_on_response_headers: 'iii->i',
  proxy_on_response_body: 'iii->i',
  proxy_on_response_trailers: 'ii->i',
  proxy_on_log: 'i->',
  proxy_on_done: 'i->i',
  proxy_on_delete: 'i->',
  proxy_on_tick: 'i->',
  proxy_on_queue_ready: 'ii->',
  proxy_on_http_call_response: 'iiiii->',
};

/** Callbacks that run once the response exists or the stream ends. */
export const STREAM_END_CALLBACKS = ['proxy_on_response_headers', 'proxy_on_response_body', 'proxy_on_response_trailers', 'proxy_on_log', 'proxy_on_done', 'proxy_on_delete'];

export const ABI_EXPORT = 'proxy_abi_version_0_2_1';
export const OTHER_ABI_EXPORTS = ['proxy_abi_version_0_1_0', 'proxy_abi_version_0_2_0', 'proxy_abi_version_0_3_0'];
