/**
 * The host's public API: load a proxy-wasm filter as Envoy would and run HTTP requests
 * through it. One Filter is one VM with one root context (a plugin); every request is a
 * stream context with Envoy's callback order: context_create, request_headers,
 * request_body, (upstream), response_headers, response_body, log, done, delete.
 */
import { randomUUID } from 'node:crypto';
import { Action, type LogLevelName } from './abi.ts';
import { Vm, Open, FilterLoadError, type Stream, type LogLine, type Cluster, type LocalReply } from './vm.ts';
import { Lookup, metadataMessage, type PropertyValue } from './properties.ts';
import type { Pair } from './pairs.ts';

export { FilterLoadError };
export type { LogLine, Cluster, Pair, PropertyValue };

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

export interface FilterRequest {
  method: string;
  /** Path with query, exactly as received. */
  path: string;
  authority: string;
  scheme?: string;
  /** Names are lowercased; pseudo-headers are not allowed here. */
  headers?: Record<string, string | string[]> | Pair[];
  body?: string | Uint8Array;
  /** `principal`: the peer certificate's URI SAN (mTLS); omitted: no client certificate. */
  source?: { principal?: string; address?: string };
  destination?: { address?: string };
  /** Dynamic metadata by filter name, e.g. `{ 'envoy.filters.http.jwt_authn': { user: claims } }`. */
  metadata?: Record<string, Record<string, unknown>>;
  /** Overrides of Envoy attributes by `top` or `top.key`, e.g. `{ 'connection.requested_server_name': 'svc' }`. Integers as bigint. */
  properties?: Record<string, PropertyValue>;
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
}

export interface HandleOptions {
  /** The upstream; without it a stand-in answers 200 with no body. */
  upstream?: (request: { headers: Pair[]; body: Uint8Array }) => UpstreamResponse | Promise<UpstreamResponse>;
}

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
const toBytes = (v: string | Uint8Array | undefined): Uint8Array => (typeof v === 'string' ? encoder.encode(v) : (v ?? EMPTY));
const STAND_IN: UpstreamResponse = { status: 200 };

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

let connectionIds = 0n;

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
  metrics(): ReturnType<Vm['metricsSnapshot']> {
    return this.vm.metricsSnapshot();
  }

  /**
   * The same metrics under the names Envoy's `/stats` shows: Envoy puts every metric a
   * module defines in its custom stat namespace, `wasmcustom.` (docs/host.md, "Metrics").
   */
  stats(): ReturnType<Vm['metricsSnapshot']> {
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
    if (vm.failed) return failStream([]);
    const stream = vm.addStream(new RequestStream(vm.newContextId(), request, body, vm));
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
      if (vm.failed) return failStream(stream.logs);
      if (stream.resetDetails) return reset(stream);
      let upstreamRequest: Outcome['upstreamRequest'] = null;
      let response: UpstreamResponse;
      let details = 'via_upstream';
      const replied = stream.reply;
      if (replied) {
        response = localResponse(replied);
        details = replied.details;
      } else {
        upstreamRequest = { headers: stream.requestHeaders, body: stream.requestBody };
        response = options.upstream ? await options.upstream(upstreamRequest) : STAND_IN;
      }
      stream.reply = null;
      paused = this.respond(stream, response);
      if (paused) await paused;
      if (vm.failed) return failStream(stream.logs);
      if (stream.resetDetails) return reset(stream);
      // A local reply sent while the response was being processed replaces the response.
      const late = stream.reply as LocalReply | null;
      if (late) {
        const r = localResponse(late);
        return { kind: 'reply', status: r.status, headers: r.headers, body: late.body, details: late.details, upstreamRequest, logs: stream.logs };
      }
      return {
        kind: replied ? 'reply' : 'forward',
        status: response.status,
        headers: this.vm.seesStreamEnd ? withoutStatus(stream.responseHeaders) : stream.responseHeaders,
        body: stream.responseBody,
        details,
        upstreamRequest,
        logs: stream.logs,
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
        stream.reply ??= { status: 408, details: 'stream_idle_timeout', body: encoder.encode('stream timeout'), headers: [] };
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

/** Envoy's local reply: the filter's headers, then content-length and (for a body) a default content-type. */
function localResponse(reply: LocalReply): UpstreamResponse & { headers: Pair[] } {
  const headers: Pair[] = [...reply.headers];
  headers.push(['content-length', String(reply.body.length)]);
  if (reply.body.length > 0 && !headers.some(([k]) => k === 'content-type')) headers.push(['content-type', 'text/plain']);
  return { status: reply.status, headers, body: reply.body };
}

/** Envoy's failStream: a trapped (failed) VM with fail_open false answers 503, details wasm_fail_stream. */
function failStream(logs: LogLine[]): Outcome {
  return { kind: 'reply', status: 503, headers: [['content-length', '0']], body: EMPTY, details: 'wasm_fail_stream', upstreamRequest: null, logs };
}

function reset(stream: Stream): Outcome {
  return { kind: 'reset', status: 0, headers: [], body: EMPTY, details: stream.resetDetails!, upstreamRequest: null, logs: stream.logs };
}

class RequestStream implements Stream {
  requestHeaders: Pair[];
  responseHeaders: Pair[] = [];
  responseBody = EMPTY;
  open = 0;
  reply: LocalReply | null = null;
  resetDetails: string | null = null;
  logs: LogLine[] = [];
  filterState: Map<string, Uint8Array> | null = null;
  wake: (() => void) | null = null;
  continued = false;
  private startedAt: bigint | undefined;
  private connectionId: bigint | undefined;

  constructor(
    readonly id: number,
    readonly request: FilterRequest,
    public requestBody: Uint8Array,
    private readonly vm: Vm,
  ) {
    this.requestHeaders = requestHeaders(request);
  }

  get plainProperties(): boolean {
    return this.request.properties === undefined;
  }

  peerPrincipal(): string | undefined {
    return this.request.source?.principal;
  }

  filterMetadata(): Record<string, PropertyValue> {
    return (this.request.metadata ?? {}) as Record<string, PropertyValue>;
  }

  /** Envoy's attributes (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes). */
  property(name: string): PropertyValue | undefined {
    const overrides = this.request.properties;
    if (overrides) {
      if (Object.hasOwn(overrides, name)) return overrides[name];
      if (Object.keys(overrides).some((k) => k.startsWith(`${name}.`))) return new Scope(this, name);
    }
    switch (name) {
      case 'request':
      case 'source':
      case 'destination':
      case 'connection':
        return new Scope(this, name);
      case 'response':
        return this.responseHeaders.length ? new Scope(this, name) : undefined;
      case 'connection_id':
        return this.connection();
      case 'metadata':
        return metadataMessage(this.filterMetadata());
      case 'plugin_name':
        return this.vm.pluginName;
      default:
        return undefined;
    }
  }

  /** `scope.key`: an override, else Envoy's value. */
  attribute(scope: string, key: string): PropertyValue | undefined {
    const overrides = this.request.properties;
    const dotted = overrides && `${scope}.${key}`;
    if (dotted && Object.hasOwn(overrides, dotted)) return overrides[dotted];
    const req = this.requestHeaders;
    switch (scope) {
      case 'request':
        switch (key) {
          case 'path': return headerValue(req, ':path');
          case 'url_path': return headerValue(req, ':path')?.split('?')[0];
          case 'host': return headerValue(req, ':authority');
          case 'scheme': return headerValue(req, ':scheme');
          case 'method': return headerValue(req, ':method');
          case 'headers': return new Headers(req);
          case 'referer': return headerValue(req, 'referer');
          case 'useragent': return headerValue(req, 'user-agent');
          case 'id': return headerValue(req, 'x-request-id');
          case 'protocol': return 'HTTP/1.1';
          case 'time': return (this.startedAt ??= this.vm.options.clock());
          case 'query': {
            const path = headerValue(req, ':path') ?? '';
            const q = path.indexOf('?');
            return q < 0 ? '' : path.slice(q + 1);
          }
          case 'size': {
            const length = headerValue(req, 'content-length');
            return length !== undefined && /^\d+$/.test(length) ? BigInt(length) : undefined;
          }
        }
        return undefined;
      case 'response':
        switch (key) {
          case 'code': return BigInt(headerValue(this.responseHeaders, ':status') ?? 0);
          case 'headers': return new Headers(this.responseHeaders);
          case 'size': return BigInt(this.responseBody.length);
        }
        return undefined;
      case 'source':
      case 'destination': {
        const address = (scope === 'source' ? this.request.source?.address : this.request.destination?.address) ?? '127.0.0.1:0';
        if (key === 'address') return address;
        if (key === 'port') return BigInt(address.slice(address.lastIndexOf(':') + 1) || 0);
        return undefined;
      }
      case 'connection': {
        const principal = this.request.source?.principal;
        switch (key) {
          case 'mtls': return principal !== undefined;
          case 'uri_san_peer_certificate': return principal;
          case 'id': return this.connection();
        }
        return undefined;
      }
    }
    return undefined;
  }

  private connection(): bigint {
    return (this.connectionId ??= ++connectionIds);
  }
}

/** One of the stream's attribute scopes (`request`, `connection`, …), looked up key by key. */
class Scope extends Lookup {
  constructor(private readonly stream: RequestStream, private readonly scope: string) {
    super();
  }
  get(key: string): PropertyValue | undefined {
    return this.stream.attribute(this.scope, key);
  }
}

/** `request.headers` / `response.headers`: Envoy joins repeated values with ','. */
class Headers extends Lookup {
  constructor(private readonly map: Pair[]) {
    super();
  }
  get(key: string): PropertyValue | undefined {
    return headerValue(this.map, key.toLowerCase());
  }
}

function headerValue(map: Pair[], name: string): string | undefined {
  let out: string | undefined;
  for (const [k, v] of map) if (k === name) out = out === undefined ? v : `${out},${v}`;
  return out;
}

function requestHeaders(request: FilterRequest): Pair[] {
  const headers: Pair[] = [
    [':authority', request.authority],
    [':path', request.path],
    [':method', request.method],
    [':scheme', request.scheme ?? 'https'],
  ];
  let hasRequestId = false;
  const given = request.headers;
  if (Array.isArray(given)) for (const [k, v] of given) hasRequestId = addRequestHeader(headers, k, v) || hasRequestId;
  else if (given) {
    for (const name in given) {
      if (!Object.hasOwn(given, name)) continue;
      const value = given[name];
      if (Array.isArray(value)) for (const v of value) hasRequestId = addRequestHeader(headers, name, v) || hasRequestId;
      else hasRequestId = addRequestHeader(headers, name, value) || hasRequestId;
    }
  }
  // Envoy's connection manager generates x-request-id when the request has none.
  if (!hasRequestId) headers.push(['x-request-id', randomUUID()]);
  return headers;
}

/** Adds one request header; true when it is x-request-id. */
function addRequestHeader(headers: Pair[], rawName: string, value: string): boolean {
  const name = rawName.toLowerCase();
  if (name.startsWith(':')) throw new TypeError(`request header ${name}: pseudo-headers come from method, path, authority and scheme`);
  if (name !== 'host') headers.push([name, value]); // HTTP/1 Host becomes :authority
  return name === 'x-request-id';
}
