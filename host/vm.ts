/**
 * One proxy-wasm VM: a filter module instantiated against exactly Envoy's import surface,
 * with the host side of ABI 0.2.1. Stream orchestration (which callback runs when) lives in
 * filter.ts; this file answers the module's host calls the way Envoy does (context.cc and
 * proxy-wasm-cpp-host exports.cc), checking every pointer the module hands over.
 */
import { randomFillSync } from 'node:crypto';
import {
  Status, MapType, MAP_TYPE_MAX, BufferType, BUFFER_TYPE_MAX, StreamType, LogLevel, LOG_LEVEL_NAMES,
  MetricType, IMPORTS, CALLBACKS, ABI_EXPORT, OTHER_ABI_EXPORTS, type LogLevelName,
} from './abi.ts';
import { readSurface, describeSignature } from './module.ts';
import { decodeRawPairs, decodeUtf8, utf8Length, writeUtf8, encodeUtf8, writePairs, pairsSize, asciiPairsSize, writeAscii, writeAsciiPairs, type Pair } from './pairs.ts';
import { splitPath, resolve, serialize, hotProperty, HotProperty, Message, type PropertyPath, type PropertyValue } from './properties.ts';
import { encodeMetadata } from './metadata-pb.ts';
import * as shared from './shared.ts';
import type { SharedData } from './shared-data.ts';
import { AddressCache } from './address-cache.ts';
import { isFieldValue } from './field-value.ts';
import { restrictable, DURING_START, DURING_MALLOC, type Restriction } from './restricted.ts';

/** Thrown when a module cannot be loaded the way Envoy would refuse it. */
export class FilterLoadError extends Error {
  override name = 'FilterLoadError';
}

export interface LogLine {
  level: LogLevelName;
  message: string;
  /** The context that logged: the root context or a stream's. */
  contextId: number;
}

export interface HttpCallRequest {
  cluster: string;
  headers: Pair[];
  body: Uint8Array;
  /** 0: no timeout. */
  timeoutMs: number;
}
export interface HttpCallResponse {
  status: number;
  headers?: Pair[] | Record<string, string>;
  body?: string | Uint8Array;
}
export type Cluster = (request: HttpCallRequest) => Promise<HttpCallResponse>;

export interface VmOptions {
  vmId: string;
  rootId: string;
  vmConfiguration: Uint8Array;
  logLevel: LogLevelName;
  log?: (line: LogLine) => void;
  clock: () => bigint;
  clusters: Record<string, Cluster>;
}

/** What a stream context exposes to the host calls; filter.ts owns its life cycle. */
export interface Stream {
  id: number;
  requestHeaders: Pair[];
  requestBody: Uint8Array;
  responseHeaders: Pair[];
  responseBody: Uint8Array;
  /** Which maps and buffers the current phase opens (Envoy clears its pointers on Continue). */
  open: number;
  reply: LocalReply | null;
  resetDetails: string | null;
  logs: LogLine[];
  /** Values the filter set with proxy_set_property (created on first use). */
  filterState: Map<string, Uint8Array> | null;
  property(name: string): PropertyValue | undefined;
  /** True when the request overrides no property: then the hot paths below answer for property(). */
  plainProperties: boolean;
  /** `connection.uri_san_peer_certificate`. */
  peerPrincipal(): string | undefined;
  /** The `filter_metadata` map of the `metadata` attribute. */
  filterMetadata(): Record<string, PropertyValue>;
  /** Set while the stream is paused; continue_stream / close / local reply wake it. */
  wake: (() => void) | null;
  continued: boolean;
}
export const Open = {
  REQUEST_HEADERS: 1,
  REQUEST_BODY: 2,
  RESPONSE_HEADERS: 4,
  RESPONSE_BODY: 8,
  /** on_log: headers readable, nothing writable. */
  LOG: 16,
} as const;

export interface LocalReply {
  status: number;
  details: string;
  body: Uint8Array;
  headers: Pair[];
}

interface Context {
  id: number;
  stream: Stream | null;
}

interface Metric {
  name: string;
  type: number;
  value: bigint;
  count: number;
  sum: number;
}

const decoder = new TextDecoder();
const WASI = { SUCCESS: 0, BADF: 8, FAULT: 21, NOSYS: 52, NOTSUP: 58 } as const;

/** Thrown by proc_exit: ends the current VM call like a trap. */
class ProcExit extends Error {}

export class Vm {
  readonly rootContextId: number;
  failed: string | null = null;
  /** Set while the module runs _initialize or its allocator: see restricted.ts. */
  restriction: Restriction | null = null;
  /**
   * The module's functions by name, looked up per callback: a Map is cheaper than the
   * exports object (a frozen object with one property per export).
   */
  private readonly callbacks = new Map<string, (...args: number[]) => any>();
  private readonly allocate: (size: number) => number;
  private readonly memory: WebAssembly.Memory;
  private u8: Uint8Array;
  private dv: DataView;
  private readonly contexts = new Map<number, Context>();
  private current: Context | null = null;
  private effective: Context | null = null;
  private nextContextId = 1;
  private readonly logThreshold: number;
  private pluginConfiguration: Uint8Array | null = null;
  private httpCallResponse: { headers: Pair[]; body: Uint8Array } | null = null;
  private nextHttpToken = 1;
  readonly pendingHttpCalls = new Set<number>();
  private readonly metrics: Metric[] = [];
  private readonly metricIds = new Map<string, number>();
  private tick: NodeJS.Timeout | null = null;
  private doneWaiter: (() => void) | null = null;
  private readonly sharedData: SharedData;
  private readonly queueOwner: shared.QueueOwner = { notify: (token) => this.callRoot('proxy_on_queue_ready', token) };

  static async create(bytes: Uint8Array, options: VmOptions): Promise<Vm> {
    const module = await compile(bytes);
    const vm = new Vm(module, options);
    return vm;
  }

  private constructor(module: WebAssembly.Module, readonly options: VmOptions) {
    this.logThreshold = LogLevel[options.logLevel];
    this.sharedData = shared.sharedStore(options.vmId);
    let instance: WebAssembly.Instance;
    try {
      instance = new WebAssembly.Instance(module, this.imports());
    } catch (err) {
      throw new FilterLoadError(`Wasm VM failed to start: ${(err as Error).message}`);
    }
    for (const [name, f] of Object.entries(instance.exports)) if (typeof f === 'function') this.callbacks.set(name, f as (...args: number[]) => any);
    this.allocate = this.callbacks.get('malloc') ?? this.callbacks.get('proxy_on_memory_allocate')!;
    this.memory = instance.exports.memory as WebAssembly.Memory;
    this.u8 = new Uint8Array(this.memory.buffer);
    this.dv = new DataView(this.memory.buffer);
    this.rootContextId = this.nextContextId++;
    this.contexts.set(this.rootContextId, { id: this.rootContextId, stream: null });
    this.seesStreamEnd = STREAM_END_CALLBACKS.some((name) => this.callbacks.has(name));
  }

  /**
   * Whether the module exports a callback that runs once the response exists (the response
   * phase, on_log, on_done, on_delete). Without one, nothing in the module can observe the
   * response or the stream's end, and filter.ts skips building what only those would see.
   */
  readonly seesStreamEnd: boolean;

  /** Envoy's start sequence: _initialize, context create, vm start, configure. Throws FilterLoadError. */
  start(pluginConfiguration: Uint8Array): void {
    const root = this.contexts.get(this.rootContextId)!;
    if (this.has('_initialize')) {
      this.restriction = DURING_START;
      this.call(root, '_initialize');
      this.restriction = null;
      if (this.failed) throw new FilterLoadError(`Wasm VM failed in _initialize: ${this.failed}`);
    }
    this.call(root, 'proxy_on_context_create', root.id, 0);
    if (this.has('proxy_on_vm_start') && !this.call(root, 'proxy_on_vm_start', root.id, this.options.vmConfiguration.length)) {
      throw new FilterLoadError(this.failed ? `Wasm VM failed in proxy_on_vm_start: ${this.failed}` : 'Wasm VM failed to start: proxy_on_vm_start returned false');
    }
    this.pluginConfiguration = pluginConfiguration;
    try {
      if (this.has('proxy_on_configure') && !this.call(root, 'proxy_on_configure', root.id, pluginConfiguration.length)) {
        throw new FilterLoadError(this.failed ? `Wasm VM failed in proxy_on_configure: ${this.failed}` : 'Unable to configure Wasm plugin: proxy_on_configure returned false');
      }
    } finally {
      this.pluginConfiguration = null;
    }
    if (this.failed) throw new FilterLoadError(`Wasm VM failed during start: ${this.failed}`);
  }

  /** Calls an exported callback as `ctx`; a trap marks the VM failed (as Envoy does) and yields undefined. */
  call(ctx: Context, name: string, a = 0, b = 0, c = 0, d = 0, e = 0): number | undefined {
    if (this.failed) return undefined;
    const f = this.callbacks.get(name);
    if (!f) return undefined;
    const saved = this.current;
    const savedEffective = this.effective;
    this.current = ctx;
    this.effective = null;
    try {
      return f(a, b, c, d, e); // wasm ignores surplus arguments
    } catch (err) {
      this.failed = `${name}: ${err instanceof ProcExit ? 'proc_exit called' : (err as Error).message}`;
      this.emitLog(LogLevel.critical, `wasm trap in ${this.failed}`, ctx.id);
      this.onFailed?.();
      return undefined;
    } finally {
      this.current = saved;
      this.effective = savedEffective;
    }
  }

  has(name: string): boolean {
    return this.callbacks.has(name);
  }

  newContextId(): number {
    return this.nextContextId++;
  }

  /** Registers a stream context (id from newContextId) and tells the module: proxy_on_context_create(id, root). */
  addStream<S extends Stream>(stream: S): S {
    const ctx = { id: stream.id, stream };
    this.contexts.set(stream.id, ctx);
    this.call(ctx, 'proxy_on_context_create', stream.id, this.rootContextId);
    return stream;
  }

  callStream(stream: Stream, name: string, a = 0, b = 0): number | undefined {
    return this.call(this.contexts.get(stream.id)!, name, stream.id, a, b);
  }

  deleteStream(stream: Stream): void {
    const ctx = this.contexts.get(stream.id);
    if (!ctx) return;
    if (!this.seesStreamEnd) {
      this.contexts.delete(stream.id);
      return;
    }
    // Envoy's connection manager writes access logs (on_log) before it destroys the filters
    // (onDestroy: on_done, then on_delete).
    stream.open = Open.LOG;
    this.call(ctx, 'proxy_on_log', stream.id);
    stream.open = 0;
    this.call(ctx, 'proxy_on_done', stream.id);
    this.call(ctx, 'proxy_on_delete', stream.id);
    this.contexts.delete(stream.id);
  }

  private callRoot(name: string, a = 0, b = 0, c = 0, d = 0): void {
    const root = this.contexts.get(this.rootContextId);
    if (root) this.call(root, name, root.id, a, b, c, d);
  }

  stopTimers(): void {
    if (this.tick) clearInterval(this.tick);
    this.tick = null;
    shared.dropQueues(this.queueOwner);
  }

  /** Root on_done (waiting briefly for proxy_done when it answers false), then on_delete. */
  async close(): Promise<void> {
    this.stopTimers();
    const root = this.contexts.get(this.rootContextId);
    if (!root) return;
    if (this.call(root, 'proxy_on_done', root.id) === 0) {
      await new Promise<void>((done) => {
        const timer = setTimeout(done, 1000);
        this.doneWaiter = () => (clearTimeout(timer), done());
      });
    }
    this.call(root, 'proxy_on_delete', root.id);
    this.contexts.delete(root.id);
  }

  /** The module's metrics by the name it defined, each with `prefix` before it. */
  metricsSnapshot(prefix = ''): Record<string, { type: 'counter' | 'gauge' | 'histogram'; value: number; count?: number; sum?: number }> {
    const out: ReturnType<Vm['metricsSnapshot']> = {};
    for (const m of this.metrics) {
      const name = prefix + m.name;
      if (m.type === MetricType.HISTOGRAM) out[name] = { type: 'histogram', value: m.sum, count: m.count, sum: m.sum };
      else out[name] = { type: m.type === MetricType.COUNTER ? 'counter' : 'gauge', value: Number(m.value) };
    }
    return out;
  }

  // ---- memory -------------------------------------------------------------------------

  private view(): Uint8Array {
    // Growing wasm memory detaches the old buffer, leaving our views empty: refresh only then.
    if (this.u8.byteLength === 0) {
      this.u8 = new Uint8Array(this.memory.buffer);
      this.dv = new DataView(this.memory.buffer);
    }
    return this.u8;
  }

  /** Is [ptr, ptr+len) inside the module's memory? (A check without making a view.) */
  private inBounds(ptr: number, len: number): boolean {
    return (ptr >>> 0) + (len >>> 0) <= this.view().length;
  }

  /** The module's bytes at [ptr, ptr+len), or null when out of bounds. A view: copy to keep. */
  private read(ptr: number, len: number): Uint8Array | null {
    const mem = this.view();
    ptr >>>= 0;
    len >>>= 0;
    return ptr + len <= mem.length ? mem.subarray(ptr, ptr + len) : null;
  }

  private readString(ptr: number, len: number): string | null {
    const mem = this.view();
    ptr >>>= 0;
    len >>>= 0;
    return ptr + len <= mem.length ? decodeUtf8(mem, ptr, ptr + len) : null;
  }

  private setU32(ptr: number, value: number): boolean {
    ptr >>>= 0;
    if (ptr + 4 > this.view().length) return false;
    this.dv.setUint32(ptr, value, true);
    return true;
  }

  private setU64(ptr: number, value: bigint): boolean {
    ptr >>>= 0;
    if (ptr + 8 > this.view().length) return false;
    this.dv.setBigUint64(ptr, value, true);
    return true;
  }

  /** Memory from the module's allocator (malloc or proxy_on_memory_allocate); 0 on failure. */
  private alloc(size: number): number {
    const saved = this.restriction;
    this.restriction = DURING_MALLOC;
    let ptr: number;
    try {
      ptr = this.allocate(size) >>> 0;
    } finally {
      this.restriction = saved;
    }
    return ptr !== 0 && ptr + size <= this.view().length ? ptr : 0;
  }

  /**
   * Envoy's copyToPointerSize: allocate in the module, write `value` there with `codec`,
   * write pointer and size. The first attempt sizes strings as ASCII (no scan); when one is
   * not, the codec says so and the value is written again with exact UTF-8 sizes.
   */
  private place<T>(value: T, codec: Codec<T>, ptrPtr: number, sizePtr: number): number {
    let size = codec.size(value, false);
    let ptr = 0;
    if (size > 0) {
      ptr = this.alloc(size);
      if (ptr === 0) return Status.INVALID_MEMORY_ACCESS;
      if (!codec.write(value, this.view(), ptr, false)) {
        size = codec.size(value, true);
        ptr = this.alloc(size);
        if (ptr === 0) return Status.INVALID_MEMORY_ACCESS;
        codec.write(value, this.view(), ptr, true);
      }
    }
    return this.setU32(ptrPtr, ptr) && this.setU32(sizePtr, size) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  }

  private copyOut(value: Uint8Array | string, ptrPtr: number, sizePtr: number): number {
    return typeof value === 'string' ? this.place(value, TEXT, ptrPtr, sizePtr) : this.place(value, BYTES, ptrPtr, sizePtr);
  }

  /** A message's wire bytes; null (it cannot be serialized, e.g. nested too deep): SERIALIZATION_FAILURE, as Envoy answers. */
  private copyOutMessage(bytes: Uint8Array | null, ptrPtr: number, sizePtr: number): number {
    return bytes ? this.place(bytes, BYTES, ptrPtr, sizePtr) : Status.SERIALIZATION_FAILURE;
  }

  /** The property path at [ptr, ptr+len), decoded once per address; null when out of bounds. */
  private pathAt(ptr: number, len: number): PropertyPath | null {
    return this.inBounds(ptr, len) ? this.paths.get(this.u8, ptr >>> 0, len >>> 0) : null;
  }

  private readonly paths = new AddressCache((bytes): PropertyPath => {
    const segments = splitPath(bytes);
    return { segments, hot: hotProperty(segments) };
  });

  /** A header name the module passes (nearly always from its static data), lowercased as Envoy's maps key them; null when out of bounds. */
  private headerName(ptr: number, len: number): string | null {
    return this.inBounds(ptr, len) ? this.headerNames.get(this.u8, ptr >>> 0, len >>> 0) : null;
  }

  private readonly headerNames = new AddressCache((bytes) => decodeUtf8(bytes).toLowerCase());

  // ---- contexts, maps and buffers ----------------------------------------------------------

  private ctx(): Context {
    return this.effective ?? this.current!;
  }

  private stream(): Stream | null {
    return this.ctx().stream;
  }

  private emitLog(level: number, message: string, contextId: number): void {
    const line: LogLine = { level: LOG_LEVEL_NAMES[level], message, contextId };
    const stream = this.contexts.get(contextId)?.stream;
    if (stream) stream.logs.push(line);
    this.options.log?.(line);
  }

  /** The header map of `type` as Envoy's getConstMap / getMap would find it now. */
  private headerMap(type: number, write: boolean): Pair[] | null {
    const s = this.stream();
    switch (type) {
      case MapType.REQUEST_HEADERS:
        if (!s) return null;
        return s.open & Open.REQUEST_HEADERS || (!write && s.open & Open.LOG) ? s.requestHeaders : null;
      case MapType.RESPONSE_HEADERS:
        if (!s) return null;
        return s.open & Open.RESPONSE_HEADERS || (!write && s.open & Open.LOG) ? s.responseHeaders : null;
      case MapType.HTTP_CALL_RESPONSE_HEADERS:
        return !write && this.httpCallResponse ? this.httpCallResponse.headers : null;
      default:
        return null;
    }
  }

  private buffer(type: number): Uint8Array | null {
    const s = this.stream();
    switch (type) {
      case BufferType.HTTP_REQUEST_BODY:
        return s && s.open & Open.REQUEST_BODY ? s.requestBody : EMPTY;
      case BufferType.HTTP_RESPONSE_BODY:
        return s && s.open & Open.RESPONSE_BODY ? s.responseBody : EMPTY;
      case BufferType.HTTP_CALL_RESPONSE_BODY:
        return this.httpCallResponse ? this.httpCallResponse.body : null;
      case BufferType.VM_CONFIGURATION:
        return this.options.vmConfiguration;
      case BufferType.PLUGIN_CONFIGURATION:
        return this.pluginConfiguration;
      default:
        return EMPTY;
    }
  }

  /** Delivers an http_call answer (or failure: null) to proxy_on_http_call_response on the root context. */
  private deliverHttpCall(token: number, response: { headers: Pair[]; body: Uint8Array } | null): void {
    if (!this.pendingHttpCalls.delete(token)) return;
    this.httpCallResponse = response;
    try {
      this.callRoot('proxy_on_http_call_response', token, response?.headers.length ?? 0, response?.body.length ?? 0, 0);
    } finally {
      this.httpCallResponse = null;
    }
  }

  /** filter.ts hook: paused streams must give up when the VM fails. */
  onFailed: (() => void) | null = null;

  private startHttpCall(cluster: string, headers: Pair[], body: Uint8Array, timeoutMs: number): number | { token: number } {
    const upstream = Object.hasOwn(this.options.clusters, cluster) ? this.options.clusters[cluster] : undefined;
    if (!upstream) return Status.BAD_ARGUMENT;
    const has = (name: string) => headers.some(([k]) => k === name);
    if (!has(':path') || !has(':method') || !has(':authority')) return Status.BAD_ARGUMENT;
    if (body.length > 0) headers.push(['content-length', String(body.length)]);
    const token = this.nextHttpToken++;
    this.pendingHttpCalls.add(token);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<HttpCallResponse>((done) => {
      if (timeoutMs > 0) timer = setTimeout(() => done({ status: 504, body: 'upstream request timeout' }), timeoutMs);
    });
    Promise.race([Promise.resolve().then(() => upstream({ cluster, headers, body, timeoutMs })), timeout]).then(
      (res) => this.deliverHttpCall(token, normalizeResponse(res)),
      (err) => {
        this.emitLog(LogLevel.debug, `http_call to ${cluster} failed: ${(err as Error)?.message ?? err}`, this.rootContextId);
        this.deliverHttpCall(token, null);
      },
    ).finally(() => clearTimeout(timer));
    return { token };
  }

  // ---- imports ----------------------------------------------------------------------------

  private imports(): WebAssembly.Imports {
    const env = this.envImports();
    const wasi = this.wasiImports();
    return restrictable({ env, wasi_snapshot_preview1: wasi, wasi_unstable: wasi }, this);
  }

  private envImports(): Record<string, (...args: any[]) => number | void> {
    const S = Status;
    const mapOk = (type: number) => type >>> 0 <= MAP_TYPE_MAX;
    const lower = (s: string) => s.toLowerCase();
    return {
      proxy_log: (level: number, ptr: number, size: number) => {
        if (level >>> 0 > LogLevel.critical) return S.BAD_ARGUMENT;
        if (level < this.logThreshold) return this.inBounds(ptr, size) ? S.OK : S.INVALID_MEMORY_ACCESS; // dropped: not decoded
        const message = this.readString(ptr, size);
        if (message === null) return S.INVALID_MEMORY_ACCESS;
        this.emitLog(level, message, this.ctx().id);
        return S.OK;
      },
      proxy_get_log_level: (ptr: number) => (this.setU32(ptr, this.logThreshold) ? S.OK : S.INVALID_MEMORY_ACCESS),
      proxy_get_status: (codePtr: number, ptrPtr: number, sizePtr: number) =>
        this.setU32(codePtr, 0) ? this.copyOut('', ptrPtr, sizePtr) : S.INVALID_MEMORY_ACCESS,
      proxy_set_property: (kp: number, ks: number, vp: number, vs: number) => {
        const key = this.read(kp, ks);
        const value = this.read(vp, vs);
        if (!key || !value) return S.INVALID_MEMORY_ACCESS;
        const s = this.stream();
        if (!s) return S.NOT_FOUND;
        (s.filterState ??= new Map()).set(splitPath(key).join('.'), value.slice());
        return S.OK;
      },
      proxy_get_property: (pp: number, ps: number, ptrPtr: number, sizePtr: number) => {
        const path = this.pathAt(pp, ps);
        if (!path) return S.INVALID_MEMORY_ACCESS;
        const s = path.hot === HotProperty.NONE ? null : this.stream();
        if (s?.plainProperties) {
          if (path.hot === HotProperty.METADATA) return this.copyOutMessage(encodeMetadata(s.filterMetadata()), ptrPtr, sizePtr);
          const peer = s.peerPrincipal();
          return peer === undefined ? S.NOT_FOUND : this.copyOut(peer, ptrPtr, sizePtr);
        }
        const value = resolve(path.segments, this.topProperty);
        if (value === undefined) return S.NOT_FOUND;
        if (typeof value === 'string') return this.copyOut(value, ptrPtr, sizePtr); // written straight into the module
        if (value instanceof Message) return this.copyOutMessage(value.encode(), ptrPtr, sizePtr);
        const bytes = serialize(value);
        if (typeof bytes === 'number') return bytes;
        return this.copyOut(bytes, ptrPtr, sizePtr);
      },
      proxy_send_local_response: (status: number, dp: number, ds: number, bp: number, bs: number, hp: number, hs: number, _grpc: number) => {
        const details = this.readString(dp, ds);
        const body = this.read(bp, bs);
        const headers = this.read(hp, hs);
        if (details === null || !body || !headers) return S.INVALID_MEMORY_ACCESS;
        const s = this.stream();
        if (s && !s.reply && !s.resetDetails) {
          const pairs = decodeRawPairs(headers) ?? [];
          s.reply = {
            status: status >>> 0,
            details: details.replace(/\s/g, '_'),
            body: body.slice(),
            headers: pairs.map(([k, v]) => [lower(decoder.decode(k)), decoder.decode(v)]),
          };
          s.wake?.();
        }
        return S.OK;
      },
      // Keys and values are compared and copied in place in module memory (SharedData).
      proxy_get_shared_data: (kp: number, ks: number, ptrPtr: number, sizePtr: number, casPtr: number) => {
        if (!this.inBounds(kp, ks)) return S.INVALID_MEMORY_ACCESS;
        const store = this.sharedData;
        const record = store.lookup(this.dv, kp >>> 0, ks >>> 0);
        if (record < 0) return S.NOT_FOUND;
        const size = store.valueLength(record);
        let ptr = 0;
        if (size > 0) {
          ptr = this.alloc(size); // may grow memory: alloc refreshes this.dv
          if (ptr === 0) return S.INVALID_MEMORY_ACCESS;
          store.copyValue(record, this.dv, ptr);
        }
        if (!this.setU32(ptrPtr, ptr) || !this.setU32(sizePtr, size)) return S.INVALID_MEMORY_ACCESS;
        return this.setU32(casPtr, store.version(record)) ? S.OK : S.INVALID_MEMORY_ACCESS;
      },
      proxy_set_shared_data: (kp: number, ks: number, vp: number, vs: number, cas: number) => {
        if (!this.inBounds(kp, ks) || !this.inBounds(vp, vs)) return S.INVALID_MEMORY_ACCESS;
        return this.sharedData.set(this.dv, kp >>> 0, ks >>> 0, this.dv, vp >>> 0, vs >>> 0, cas >>> 0);
      },
      proxy_register_shared_queue: (np: number, ns: number, tokenPtr: number) => {
        const name = this.readString(np, ns);
        if (name === null) return S.INVALID_MEMORY_ACCESS;
        const token = shared.registerQueue(this.options.vmId, name, this.queueOwner);
        return this.setU32(tokenPtr, token) ? S.OK : S.INVALID_MEMORY_ACCESS;
      },
      proxy_resolve_shared_queue: (vp: number, vs: number, np: number, ns: number, tokenPtr: number) => {
        const vmId = this.readString(vp, vs);
        const name = this.readString(np, ns);
        if (vmId === null || name === null) return S.INVALID_MEMORY_ACCESS;
        const token = shared.resolveQueue(vmId, name);
        if (token === undefined) return S.NOT_FOUND;
        return this.setU32(tokenPtr, token) ? S.OK : S.INVALID_MEMORY_ACCESS;
      },
      proxy_dequeue_shared_queue: (token: number, ptrPtr: number, sizePtr: number) => {
        const item = shared.dequeue(token >>> 0);
        return typeof item === 'number' ? item : this.copyOut(item, ptrPtr, sizePtr);
      },
      proxy_enqueue_shared_queue: (token: number, ptr: number, size: number) => {
        const item = this.read(ptr, size);
        if (!item) return S.INVALID_MEMORY_ACCESS;
        return shared.enqueue(token >>> 0, item.slice());
      },
      proxy_get_header_map_value: (type: number, kp: number, ks: number, ptrPtr: number, sizePtr: number) => {
        if (!mapOk(type)) return S.BAD_ARGUMENT;
        const name = this.headerName(kp, ks);
        if (name === null) return S.INVALID_MEMORY_ACCESS;
        const map = this.headerMap(type, false);
        if (!map) return S.BAD_ARGUMENT;
        const entry = map.find(([k]) => k === name);
        if (!entry) return S.NOT_FOUND;
        return this.copyOut(entry[1], ptrPtr, sizePtr);
      },
      proxy_add_header_map_value: (type: number, kp: number, ks: number, vp: number, vs: number) =>
        this.editHeaders(type, kp, ks, vp, vs, addHeader),
      proxy_replace_header_map_value: (type: number, kp: number, ks: number, vp: number, vs: number) =>
        this.editHeaders(type, kp, ks, vp, vs, replaceHeader),
      proxy_remove_header_map_value: (type: number, kp: number, ks: number) =>
        this.editHeaders(type, kp, ks, kp, 0, removeAll),
      proxy_get_header_map_pairs: (type: number, ptrPtr: number, sizePtr: number) => {
        if (!mapOk(type)) return S.BAD_ARGUMENT;
        return this.place(this.headerMap(type, false) ?? [], PAIRS, ptrPtr, sizePtr);
      },
      proxy_set_header_map_pairs: (type: number, ptr: number, size: number) => {
        if (!mapOk(type)) return S.BAD_ARGUMENT;
        const bytes = this.read(ptr, size);
        if (!bytes) return S.INVALID_MEMORY_ACCESS;
        const map = this.headerMap(type, true);
        if (!map) return S.BAD_ARGUMENT;
        const pairs = decodeRawPairs(bytes);
        if (!pairs) return S.BAD_ARGUMENT;
        if (!pairs.every(([, v]) => isFieldValue(v, 0, v.length))) return this.refuseHeaderValue();
        map.length = 0;
        for (const [k, v] of pairs) addHeader(map, lower(decoder.decode(k)), decoder.decode(v));
        return S.OK;
      },
      proxy_get_header_map_size: (type: number, sizePtr: number) => {
        if (!mapOk(type)) return S.BAD_ARGUMENT;
        const map = this.headerMap(type, true);
        if (!map) return S.BAD_ARGUMENT;
        // Envoy answers HeaderMap::byteSize(): the bytes of all keys and values.
        let size = 0;
        for (const [k, v] of map) size += utf8Length(k) + utf8Length(v);
        return this.setU32(sizePtr, size) ? S.OK : S.INVALID_MEMORY_ACCESS;
      },
      proxy_get_buffer_status: (type: number, lengthPtr: number, flagsPtr: number) => {
        if (type >>> 0 > BUFFER_TYPE_MAX) return S.BAD_ARGUMENT;
        const buffer = this.buffer(type);
        if (!buffer) return S.NOT_FOUND;
        return this.setU32(lengthPtr, buffer.length) && this.setU32(flagsPtr, 0) ? S.OK : S.INVALID_MEMORY_ACCESS;
      },
      proxy_get_buffer_bytes: (type: number, start: number, length: number, ptrPtr: number, sizePtr: number) => {
        if (type >>> 0 > BUFFER_TYPE_MAX) return S.BAD_ARGUMENT;
        const buffer = this.buffer(type);
        if (!buffer) return S.NOT_FOUND;
        start >>>= 0;
        length >>>= 0;
        if (start > buffer.length) return S.BAD_ARGUMENT;
        if (start + length > buffer.length) length = buffer.length - start;
        if (length === 0) return S.OK;
        return this.copyOut(buffer.subarray(start, start + length), ptrPtr, sizePtr);
      },
      proxy_set_buffer_bytes: (type: number, start: number, length: number, ptr: number, size: number) => {
        if (type >>> 0 > BUFFER_TYPE_MAX) return S.BAD_ARGUMENT;
        const data = this.read(ptr, size);
        if (!data) return S.INVALID_MEMORY_ACCESS;
        return this.writeBody(type, start >>> 0, length >>> 0, data.slice());
      },
      proxy_http_call: (up: number, us: number, hp: number, hs: number, bp: number, bs: number, tp: number, ts: number, timeout: number, tokenPtr: number) => {
        const cluster = this.readString(up, us);
        const headerBytes = this.read(hp, hs);
        const body = this.read(bp, bs);
        const trailers = this.read(tp, ts);
        if (cluster === null || !headerBytes || !body || !trailers) return S.INVALID_MEMORY_ACCESS;
        if (!this.setU32(tokenPtr, 0)) return S.INVALID_MEMORY_ACCESS;
        if (timeout < 0) return S.BAD_ARGUMENT;
        const raw = decodeRawPairs(headerBytes) ?? [];
        const headers: Pair[] = raw.map(([k, v]) => [lower(decoder.decode(k)), decoder.decode(v)]);
        const started = this.startHttpCall(cluster, headers, body.slice(), timeout);
        if (typeof started === 'number') return started;
        this.setU32(tokenPtr, started.token);
        return S.OK;
      },
      // No gRPC services exist in this host: Envoy answers an unknown cluster with PARSE_FAILURE.
      proxy_grpc_call: () => S.PARSE_FAILURE,
      proxy_grpc_stream: () => S.PARSE_FAILURE,
      proxy_grpc_close: () => S.NOT_FOUND,
      proxy_grpc_cancel: () => S.NOT_FOUND,
      proxy_grpc_send: (_token: number, ptr: number, size: number) => (this.read(ptr, size) ? S.NOT_FOUND : S.INVALID_MEMORY_ACCESS),
      proxy_set_tick_period_milliseconds: (period: number) => {
        if (this.tick) clearInterval(this.tick);
        this.tick = null;
        if (period >>> 0 > 0) {
          this.tick = setInterval(() => this.callRoot('proxy_on_tick'), period >>> 0);
          this.tick.unref();
        }
        return S.OK;
      },
      proxy_get_current_time_nanoseconds: (ptr: number) => (this.setU64(ptr, this.options.clock()) ? S.OK : S.INVALID_MEMORY_ACCESS),
      proxy_define_metric: (type: number, np: number, ns: number, idPtr: number) => {
        const name = this.readString(np, ns);
        if (name === null) return S.INVALID_MEMORY_ACCESS;
        if (type >>> 0 > MetricType.HISTOGRAM) return S.BAD_ARGUMENT;
        let id = this.metricIds.get(`${type}\0${name}`);
        if (id === undefined) {
          id = this.metrics.push({ name, type, value: 0n, count: 0, sum: 0 });
          this.metricIds.set(`${type}\0${name}`, id);
        }
        return this.setU32(idPtr, id) ? S.OK : S.INVALID_MEMORY_ACCESS;
      },
      proxy_increment_metric: (id: number, offset: bigint) => {
        const m = this.metrics[(id >>> 0) - 1];
        if (!m) return S.NOT_FOUND;
        if (m.type === MetricType.HISTOGRAM || (m.type === MetricType.COUNTER && offset < 0n)) return S.BAD_ARGUMENT;
        m.value += offset;
        return S.OK;
      },
      proxy_record_metric: (id: number, value: bigint) => {
        const m = this.metrics[(id >>> 0) - 1];
        if (!m) return S.NOT_FOUND;
        const v = BigInt.asUintN(64, value);
        if (m.type === MetricType.COUNTER) m.value += v;
        else if (m.type === MetricType.GAUGE) m.value = v;
        else (m.count++, (m.sum += Number(v)));
        return S.OK;
      },
      proxy_get_metric: (id: number, ptr: number) => {
        const m = this.metrics[(id >>> 0) - 1];
        if (!m) return S.NOT_FOUND;
        if (m.type === MetricType.HISTOGRAM) return S.BAD_ARGUMENT;
        return this.setU64(ptr, BigInt.asUintN(64, m.value)) ? S.OK : S.INVALID_MEMORY_ACCESS;
      },
      proxy_set_effective_context: (id: number) => {
        const ctx = this.contexts.get(id >>> 0);
        if (!ctx) return S.BAD_ARGUMENT;
        this.effective = ctx;
        return S.OK;
      },
      proxy_done: () => {
        if (this.ctx().id !== this.rootContextId || !this.doneWaiter) return S.NOT_FOUND;
        this.doneWaiter();
        this.doneWaiter = null;
        return S.OK;
      },
      proxy_call_foreign_function: (np: number, ns: number, ap: number, as: number) =>
        this.read(np, ns) && this.read(ap, as) ? S.NOT_FOUND : S.INVALID_MEMORY_ACCESS,
      proxy_continue_stream: (type: number) => {
        if (type >>> 0 > StreamType.UPSTREAM) return S.BAD_ARGUMENT;
        if (type === StreamType.UPSTREAM) return S.UNIMPLEMENTED;
        const s = this.stream();
        if (s && (type === StreamType.REQUEST || type === StreamType.RESPONSE)) {
          s.continued = true;
          s.wake?.();
        }
        return S.OK;
      },
      proxy_close_stream: (type: number) => {
        if (type >>> 0 > StreamType.UPSTREAM) return S.BAD_ARGUMENT;
        const s = this.stream();
        if (s && (type === StreamType.REQUEST || type === StreamType.RESPONSE) && !s.resetDetails) {
          s.resetDetails = 'wasm_close_stream';
          s.wake?.();
        }
        return S.OK;
      },
      emscripten_notify_memory_growth: () => void this.view(),
      pthread_equal: (a: number, b: number) => (a === b ? 1 : 0),
    };
  }

  private editHeaders(
    type: number, kp: number, ks: number, vp: number, vs: number,
    edit: (map: Pair[], key: string, value: string) => void,
  ): number {
    if (type >>> 0 > MAP_TYPE_MAX) return Status.BAD_ARGUMENT;
    const key = this.headerName(kp, ks);
    const value = this.readString(vp, vs);
    if (key === null || value === null) return Status.INVALID_MEMORY_ACCESS;
    const map = this.headerMap(type, true);
    if (!map) return Status.BAD_ARGUMENT;
    if (!isFieldValue(this.view(), vp >>> 0, (vp >>> 0) + (vs >>> 0))) return this.refuseHeaderValue();
    edit(map, key, value);
    return Status.OK;
  }

  /**
   * A header value that is not an RFC 9110 field value (CR, LF, NUL, other controls) is never
   * stored, and the stream is reset: whatever the module does with BAD_ARGUMENT, the request
   * is not forwarded (docs/host.md, "Header values").
   */
  private refuseHeaderValue(): number {
    const s = this.stream();
    if (s && !s.resetDetails) {
      s.resetDetails = 'wasm_invalid_header_value';
      s.wake?.();
    }
    return Status.BAD_ARGUMENT;
  }

  /** Envoy's Buffer::copyFrom: prepend (0,0), replace all (0, ≥size), append (start ≥ size). */
  private writeBody(type: number, start: number, length: number, data: Uint8Array): number {
    const s = this.stream();
    const field =
      type === BufferType.HTTP_REQUEST_BODY && s && s.open & Open.REQUEST_BODY ? 'requestBody'
      : type === BufferType.HTTP_RESPONSE_BODY && s && s.open & Open.RESPONSE_BODY ? 'responseBody'
      : null;
    if (!s || !field) return Status.BAD_ARGUMENT;
    const current = s[field];
    if (start === 0 && length === 0) s[field] = concat(data, current);
    else if (start === 0 && length >= current.length) s[field] = data;
    else if (start >= current.length) s[field] = concat(current, data);
    else return Status.BAD_ARGUMENT;
    return Status.OK;
  }

  private readonly topProperty = (name: string): PropertyValue | undefined => {
    switch (name) {
      case 'plugin_root_id':
        return this.options.rootId;
      case 'plugin_vm_id':
        return this.options.vmId;
    }
    const s = this.stream();
    if (!s) return name === 'plugin_name' ? this.pluginName : undefined;
    return s.property(name) ?? s.filterState?.get(name);
  };

  pluginName = '';

  private wasiImports(): Record<string, (...args: any[]) => number | void> {
    return {
      fd_write: (fd: number, iovs: number, count: number, nwrittenPtr: number) => {
        if (fd !== 1 && fd !== 2) return WASI.BADF;
        const chunks: Uint8Array[] = [];
        for (let k = 0; k < count >>> 0; k++) {
          const iov = this.read(iovs + k * 8, 8);
          if (!iov) return WASI.FAULT;
          const view = new DataView(iov.buffer, iov.byteOffset, 8);
          const data = this.read(view.getUint32(0, true), view.getUint32(4, true));
          if (!data) return WASI.FAULT;
          chunks.push(data.slice());
        }
        const all = concat(...chunks);
        let text = decoder.decode(all);
        if (text.endsWith('\n')) text = text.slice(0, -1);
        const level = fd === 1 ? LogLevel.info : LogLevel.error;
        if (all.length > 0 && level >= this.logThreshold) this.emitLog(level, text, this.ctx().id);
        return this.setU32(nwrittenPtr, all.length) ? WASI.SUCCESS : WASI.FAULT;
      },
      fd_read: () => WASI.NOSYS,
      fd_seek: () => WASI.SUCCESS,
      fd_close: () => WASI.SUCCESS,
      fd_fdstat_get: (fd: number, statPtr: number) => {
        if (fd !== 1 && fd !== 2) return WASI.BADF;
        if (!this.read(statPtr, 24)) return WASI.FAULT;
        this.view().fill(0, statPtr >>> 0, (statPtr >>> 0) + 24);
        this.dv.setBigUint64((statPtr >>> 0) + 8, 64n, true); // rights: fd_write
        return WASI.SUCCESS;
      },
      fd_fdstat_set_flags: () => WASI.NOSYS,
      fd_prestat_get: () => WASI.BADF, // no preopened directories
      fd_prestat_dir_name: () => WASI.NOSYS,
      path_open: () => WASI.NOSYS,
      environ_get: () => WASI.SUCCESS,
      environ_sizes_get: (countPtr: number, sizePtr: number) => (this.setU32(countPtr, 0) && this.setU32(sizePtr, 0) ? WASI.SUCCESS : WASI.FAULT),
      args_get: () => WASI.SUCCESS,
      args_sizes_get: (countPtr: number, sizePtr: number) => (this.setU32(countPtr, 0) && this.setU32(sizePtr, 0) ? WASI.SUCCESS : WASI.FAULT),
      clock_time_get: (id: number, _precision: bigint, ptr: number) => {
        if (id !== 0) return WASI.NOTSUP;
        return this.setU64(ptr, this.options.clock()) ? WASI.SUCCESS : WASI.FAULT;
      },
      random_get: (ptr: number, len: number) => {
        const target = this.read(ptr, len);
        if (!target) return WASI.FAULT;
        randomFillSync(target);
        return WASI.SUCCESS;
      },
      proc_exit: () => {
        throw new ProcExit('proc_exit');
      },
      sched_yield: () => WASI.SUCCESS,
      poll_oneoff: () => WASI.NOSYS,
    };
  }
}

const EMPTY = new Uint8Array(0);

const STREAM_END_CALLBACKS = ['proxy_on_response_headers', 'proxy_on_response_body', 'proxy_on_response_trailers', 'proxy_on_log', 'proxy_on_done', 'proxy_on_delete'];

/**
 * How Vm.place writes one kind of value: its size and a writer that, when not `exact`,
 * assumes ASCII strings and answers false at the first that is not.
 */
interface Codec<T> {
  size(value: T, exact: boolean): number;
  write(value: T, out: Uint8Array, at: number, exact: boolean): boolean;
}
const BYTES: Codec<Uint8Array> = {
  size: (b) => b.length,
  write: (b, out, at) => (out.set(b, at), true),
};
const TEXT: Codec<string> = {
  size: (s, exact) => (exact ? utf8Length(s) : s.length),
  write: (s, out, at, exact) => (exact ? (writeUtf8(s, out, at), true) : writeAscii(s, out, at) >= 0),
};
/** Header maps are nearly always ASCII: one pass, and the exact UTF-8 encoding only when not. */
const PAIRS: Codec<Pair[]> = {
  size: (pairs, exact) => (pairs.length === 0 ? 0 : exact ? pairsSize(pairs) : asciiPairsSize(pairs)),
  write: (pairs, out, at, exact) => (exact ? (writePairs(pairs, out, at), true) : writeAsciiPairs(pairs, out, at)),
};

function concat(...parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
}

/**
 * Envoy's HeaderMapImpl keeps pseudo-headers before regular ones (nghttp2 requires it): a
 * pseudo-header goes after the last pseudo-header, anything else at the end.
 */
function addHeader(map: Pair[], key: string, value: string): void {
  if (key.charCodeAt(0) !== 0x3a) {
    map.push([key, value]);
    return;
  }
  let end = 0;
  while (end < map.length && map[end][0].charCodeAt(0) === 0x3a) end++;
  map.splice(end, 0, [key, value]);
}

/** Envoy's setCopy (runtime flag http_set_copy_replace_all_headers, on): remove every value, then add one. */
function replaceHeader(map: Pair[], key: string, value: string): void {
  removeAll(map, key);
  addHeader(map, key, value);
}

function removeAll(map: Pair[], key: string): void {
  let w = 0;
  for (const entry of map) if (entry[0] !== key) map[w++] = entry;
  map.length = w;
}

function normalizeResponse(res: HttpCallResponse): { headers: Pair[]; body: Uint8Array } {
  const given = res.headers ?? [];
  const pairs: Pair[] = Array.isArray(given) ? given : Object.entries(given);
  const body = typeof res.body === 'string' ? encodeUtf8(res.body) : (res.body ?? EMPTY);
  return { headers: [[':status', String(res.status)], ...pairs.map(([k, v]): Pair => [k.toLowerCase(), String(v)])], body };
}

/** Compiles and checks the module's link surface exactly as Envoy's V8 host does. */
async function compile(bytes: Uint8Array): Promise<WebAssembly.Module> {
  let surface;
  try {
    surface = readSurface(bytes);
  } catch (err) {
    throw new FilterLoadError(`Failed to load Wasm module: ${(err as Error).message}`);
  }
  for (const imp of surface.imports) {
    const where = `${imp.module}.${imp.name}`;
    const known = Object.hasOwn(IMPORTS, imp.module) && Object.hasOwn(IMPORTS[imp.module], imp.name);
    const wanted = known ? IMPORTS[imp.module][imp.name] : undefined;
    if (imp.kind !== 'func' || wanted === undefined) {
      throw new FilterLoadError(`Failed to load Wasm module due to a missing import: ${where}`);
    }
    if (imp.signature !== wanted) {
      throw new FilterLoadError(
        `Failed to load Wasm module due to an import type mismatch for ${where}, want: ${describeSignature(wanted)}, but the module imports: ${describeSignature(imp.signature ?? '?')}`,
      );
    }
  }
  const exported = surface.exportedFunctions;
  if (!exported.has(ABI_EXPORT)) {
    const other = OTHER_ABI_EXPORTS.find((name) => exported.has(name));
    throw new FilterLoadError(
      other ? `Wasm module uses an unsupported ABI version (${other}); only ${ABI_EXPORT} is accepted` : `Wasm module is missing the ABI version export ${ABI_EXPORT}`,
    );
  }
  if (!surface.exportedMemories.has('memory')) throw new FilterLoadError('Wasm module is missing the exported memory "memory"');
  if (!exported.has('malloc') && !exported.has('proxy_on_memory_allocate')) {
    throw new FilterLoadError('Wasm module is missing malloc or proxy_on_memory_allocate: the host could not hand it any data');
  }
  for (const [name, sig] of exported) {
    const wanted = CALLBACKS[name];
    if (wanted !== undefined && Object.hasOwn(CALLBACKS, name) && sig !== wanted) {
      throw new FilterLoadError(`Bad function signature for: ${name}, want: ${describeSignature(wanted)}, but the module exports: ${describeSignature(sig)}`);
    }
  }
  if (surface.hasStart) {
    // Envoy runs a start function before any context exists: host calls from it fail and the
    // VM fails to start. Refuse it up front with the fix.
    throw new FilterLoadError('Wasm module has a start section: Envoy runs it before any context exists; export _initialize instead (asc --exportStart _initialize)');
  }
  try {
    return await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  } catch (err) {
    throw new FilterLoadError(`Failed to load Wasm module: ${(err as Error).message}`);
  }
}
