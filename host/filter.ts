/**
 * The host's public API: load a proxy-wasm filter as Envoy would and run HTTP requests
 * through it. One Filter is one VM with one root context (a plugin); every request is a
 * stream context with Envoy's callback order: context_create, request_headers,
 * request_body, (upstream), response_headers, response_body, log, done, delete.
 */
import { Action, type LogLevelName } from './abi.ts';
import { Vm, FilterLoadError } from './vm.ts';
import { Stream, Open, type LogLine, type LocalReply } from './stream.ts';
import { contentTypeOf, type FilterRequest } from './request.ts';
import type { Cluster } from './host-context.ts';
import type { MetricsSnapshot } from './metrics.ts';
import type { PropertyValue } from './values.ts';
import type { Pair } from './pairs.ts';
import { grpcLocalReplyHeaders, isGrpcContentType } from './grpc-reply.ts';

export { FilterLoadError };
export type { LogLine, Cluster, Pair, PropertyValue, FilterRequest };

export interface LoadOptions {
  /** Plugin configuration (buffer type 7), e.g. a JSON string. */
  configuration?: string | Uint8Array;
  /** VM configuration (buffer type 6). */
  vmConfiguration?: string | Uint8Array;
  /** Shared data and queues are shared by every filter with the same VM id (Envoy's default: ''). */
  vmId?: string;
  rootId?: string;
  /** The `plugin_name` property (Envoy: the filter config's `name`). */
  name?: string;
  /** Lines below this level are dropped, as Envoy does at its log level (default info). */
  logLevel?: LogLevelName;
  /** Receives every log line (root and stream contexts). */
  log?: (line: LogLine) => void;
  /** Nanoseconds since the epoch, for proxy_get_current_time_nanoseconds and WASI clocks. */
  clock?: () => bigint;
  /** Upstream "clusters" proxy_http_call may name. */
  clusters?: Record<string, Cluster>;
  /** How long a paused stream may wait for proxy_continue_stream (Envoy's stream idle timeout: 5 min). */
  streamTimeoutMs?: number;
}

export interface UpstreamResponse {
  status: number;
  headers?: Record<string, string> | Pair[];
  body?: string | Uint8Array;
}

export interface Outcome {
  /** forward: the request went upstream; reply: a local reply; reset: the stream was closed without a response. */
  kind: 'forward' | 'reply' | 'reset';
  /** What the caller receives (0 for reset). */
  status: number;
  headers: Pair[];
  body: Uint8Array;
  /** Envoy's response code details: `via_upstream`, the local reply's details, `wasm_fail_stream`, `wasm_close_stream`. */
  details: string;
  /** The request as forwarded upstream, after the filter's changes; null when not forwarded. */
  upstreamRequest: { headers: Pair[]; body: Uint8Array } | null;
  /** Lines the filter logged for this request. */
  logs: LogLine[];
  /** What the filter set with proxy_set_property, by Envoy's filter-state name (`wasm.<key>`): what an access logger reads. */
  filterState: ReadonlyMap<string, Uint8Array>;
}

export interface HandleOptions {
  /** The upstream; without it a stand-in answers 200 with no body. */
  /** `logs`: what the filter logged so far (its decision line), for a caller that must record the decision before forwarding. */
  upstream?: (request: { headers: Pair[]; body: Uint8Array; logs: LogLine[] }) => UpstreamResponse | Promise<UpstreamResponse>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);
const toBytes = (v: string | Uint8Array | undefined): Uint8Array => (typeof v === 'string' ? encoder.encode(v) : (v ?? EMPTY));
const STAND_IN: UpstreamResponse = { status: 200 };
const NO_STATE: ReadonlyMap<string, Uint8Array> = new Map();

export async function loadFilter(wasm: Uint8Array, options: LoadOptions = {}): Promise<Filter> {
  const vm = await Vm.create(wasm, {
    vmId: options.vmId ?? '',
    rootId: options.rootId ?? '',
    vmConfiguration: toBytes(options.vmConfiguration),
    logLevel: options.logLevel ?? 'info',
    log: options.log,
    clock: options.clock ?? wallClock,
    clusters: options.clusters ?? {},
  });
  vm.pluginName = options.name ?? '';
  try {
    vm.start(toBytes(options.configuration));
  } catch (err) {
    vm.stopTimers();
    throw err;
  }
  return new Filter(vm, options.streamTimeoutMs ?? 300_000);
}

/** Date.now() in nanoseconds, converted once per millisecond: filters read the time on every request. */
let lastMs = -1;
let lastNs = 0n;
function wallClock(): bigint {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastNs = BigInt(ms) * 1_000_000n;
  }
  return lastNs;
}

export class Filter {
  private readonly paused = new Set<Stream>();
  private closed = false;

  constructor(
    private readonly vm: Vm,
    private readonly streamTimeoutMs: number,
  ) {
    vm.onFailed = () => {
      for (const s of this.paused) s.wake?.();
    };
  }

  /** Why the VM failed (a trap), or null. A failed VM answers every request 503, like Envoy with fail_open false. */
  get failed(): string | null {
    return this.vm.failed;
  }

  /** The module's metrics by the names it defined them with. */
  metrics(): MetricsSnapshot {
    return this.vm.metricsSnapshot();
  }

  /**
   * The same metrics under the names Envoy's `/stats` shows: Envoy puts every metric a
   * module defines in its custom stat namespace, `wasmcustom.` (docs/host.md, "Metrics").
   */
  stats(): MetricsSnapshot {
    return this.vm.metricsSnapshot('wasmcustom.');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.vm.close();
  }

  async handleRequest(request: FilterRequest, options: HandleOptions = {}): Promise<Outcome> {
    if (this.closed) throw new Error('filter is closed');
    const vm = this.vm;
    const body = toBytes(request.body);
    if (vm.failed) return failStream(isGrpcContentType(contentTypeOf(request)), null);
    const stream = vm.addStream(new Stream(vm.newContextId(), request, body, vm));
    try {
      // Request headers, then body; Envoy closes each map or buffer once the filter continues.
      stream.open = Open.REQUEST_HEADERS;
      let action = vm.callStream(stream, 'proxy_on_request_headers', stream.requestHeaders.length, body.length === 0 ? 1 : 0);
      let paused = this.settle(stream, action);
      if (paused) await paused;
      if (body.length > 0 && !ended(stream, vm)) {
        stream.open = Open.REQUEST_BODY;
        action = vm.callStream(stream, 'proxy_on_request_body', body.length, 1);
        paused = this.settle(stream, action);
        if (paused) await paused;
      }
      if (vm.failed) return failStream(stream.grpc, stream);
      if (stream.resetDetails) return reset(stream);
      let upstreamRequest: Outcome['upstreamRequest'] = null;
      let response: UpstreamResponse;
      let details = 'via_upstream';
      const replied = stream.reply;
      if (replied) {
        response = localResponse(replied, stream.grpc);
        details = replied.details;
      } else {
        upstreamRequest = { headers: stream.requestHeaders, body: stream.requestBody };
        response = options.upstream ? await options.upstream({ ...upstreamRequest, logs: stream.logs }) : STAND_IN;
      }
      stream.reply = null;
      paused = this.respond(stream, response);
      if (paused) await paused;
      if (vm.failed) return failStream(stream.grpc, stream);
      if (stream.resetDetails) return reset(stream);
      // A local reply sent while the response was being processed replaces the response.
      const late = stream.reply as LocalReply | null;
      if (late) {
        const r = localResponse(late, stream.grpc);
        return { kind: 'reply', status: r.status, headers: r.headers, body: r.body, details: late.details, upstreamRequest, logs: stream.logs, filterState: stream.filterState ?? NO_STATE };
      }
      return {
        kind: replied ? 'reply' : 'forward',
        status: response.status,
        headers: this.vm.seesStreamEnd ? withoutStatus(stream.responseHeaders) : stream.responseHeaders,
        body: stream.responseBody,
        details,
        upstreamRequest,
        logs: stream.logs,
        filterState: stream.filterState ?? NO_STATE,
      };
    } finally {
      this.paused.delete(stream);
      vm.deleteStream(stream);
    }
  }

  /**
   * Response headers and body through the filter (Envoy passes local replies through them
   * too). A module that cannot see the response (vm.seesStreamEnd) gets it as it is.
   */
  private respond(stream: Stream, response: UpstreamResponse): Promise<void> | undefined {
    const vm = this.vm;
    stream.responseHeaders = responseHeaders(response);
    stream.responseBody = toBytes(response.body);
    if (!vm.seesStreamEnd) return undefined;
    stream.responseHeaders.unshift([':status', String(response.status)]);
    stream.open = Open.RESPONSE_HEADERS;
    const eos = stream.responseBody.length === 0;
    const action = vm.callStream(stream, 'proxy_on_response_headers', stream.responseHeaders.length, eos ? 1 : 0);
    const paused = this.settle(stream, action);
    return paused ? paused.then(() => this.responseBody(stream)) : this.responseBody(stream);
  }

  private responseBody(stream: Stream): Promise<void> | undefined {
    if (stream.responseBody.length > 0 && !ended(stream, this.vm)) {
      stream.open = Open.RESPONSE_BODY;
      const paused = this.settle(stream, this.vm.callStream(stream, 'proxy_on_response_body', stream.responseBody.length, 1));
      if (paused) return paused.then(() => void (stream.open = 0));
    }
    stream.open = 0;
    return undefined;
  }

  /** After a callback: go on at Continue; otherwise wait for continue_stream, a local reply, a reset or a failure. */
  private settle(stream: Stream, action: number | undefined): Promise<void> | undefined {
    if (action === undefined || action === Action.CONTINUE || stream.continued || ended(stream, this.vm)) {
      stream.continued = false;
      return undefined;
    }
    return this.pause(stream);
  }

  private async pause(stream: Stream): Promise<void> {
    this.paused.add(stream);
    await new Promise<void>((resume) => {
      const timer = setTimeout(() => {
        stream.reply ??= { status: 408, details: 'stream_idle_timeout', body: encoder.encode('stream timeout'), headers: [], grpcStatus: null };
        stream.wake?.();
      }, this.streamTimeoutMs);
      stream.wake = () => {
        clearTimeout(timer);
        stream.wake = null;
        resume();
      };
    });
    this.paused.delete(stream);
    stream.continued = false;
  }
}

function ended(stream: Stream, vm: Vm): boolean {
  return stream.reply !== null || stream.resetDetails !== null || vm.failed !== null;
}

/** The upstream response's headers as the header map holds them (lowercase names, string values), without `:status`. */
function responseHeaders(response: UpstreamResponse): Pair[] {
  const given = response.headers;
  const out: Pair[] = [];
  if (!given) return out;
  for (const [k, v] of Array.isArray(given) ? given : Object.entries(given)) {
    const name = k.toLowerCase();
    if (name !== ':status') out.push([name, String(v)]);
  }
  return out;
}

function withoutStatus(headers: Pair[]): Pair[] {
  const out: Pair[] = [];
  for (const h of headers) if (h[0] !== ':status') out.push(h);
  return out;
}

/**
 * Envoy's local reply: the filter's headers, then content-length and (for a body) a default
 * content-type; to a gRPC request, the trailers-only gRPC form (grpc-reply.ts).
 */
function localResponse(reply: LocalReply, grpc: boolean): UpstreamResponse & { headers: Pair[]; body: Uint8Array } {
  if (grpc) {
    const headers = grpcLocalReplyHeaders(reply.status, reply.headers, decoder.decode(reply.body), reply.grpcStatus);
    return { status: 200, headers, body: EMPTY };
  }
  const headers: Pair[] = [...reply.headers];
  headers.push(['content-length', String(reply.body.length)]);
  if (reply.body.length > 0 && !headers.some(([k]) => k === 'content-type')) headers.push(['content-type', 'text/plain']);
  return { status: reply.status, headers, body: reply.body };
}

/** Envoy's failStream: a trapped (failed) VM with fail_open false answers 503 (a local reply), details wasm_fail_stream. */
function failStream(grpc: boolean, stream: Stream | null): Outcome {
  const r = localResponse({ status: 503, details: 'wasm_fail_stream', body: EMPTY, headers: [], grpcStatus: null }, grpc);
  return { kind: 'reply', status: r.status, headers: r.headers, body: r.body, details: 'wasm_fail_stream', upstreamRequest: null, logs: stream?.logs ?? [], filterState: stream?.filterState ?? NO_STATE };
}

function reset(stream: Stream): Outcome {
  return { kind: 'reset', status: 0, headers: [], body: EMPTY, details: stream.resetDetails!, upstreamRequest: null, logs: stream.logs, filterState: stream.filterState ?? NO_STATE };
}
