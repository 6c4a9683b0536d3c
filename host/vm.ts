/**
 * One proxy-wasm VM: a filter module instantiated against exactly Envoy's import surface,
 * its contexts, and the callbacks into it. Stream orchestration (which callback runs when)
 * lives in filter.ts; the host calls the module makes are answered by the import table, one
 * file per ABI area (imports-*.ts), the way Envoy does (context.cc and proxy-wasm-cpp-host
 * exports.cc), through GuestMemory, which checks every pointer the module hands over.
 */
import { LogLevel, LOG_LEVEL_NAMES, STREAM_END_CALLBACKS } from './abi.ts';
import { compile, FilterLoadError } from './link.ts';
import { GuestMemory } from './guest-memory.ts';
import { Metrics, type MetricsSnapshot } from './metrics.ts';
import * as shared from './shared.ts';
import type { SharedData } from './shared-data.ts';
import { DURING_START, DURING_MALLOC, type Restriction } from './restricted.ts';
import { Open, type Stream, type LogLine } from './stream.ts';
import type { Pair } from './pairs.ts';
import type { HostContext, ImportArea, VmOptions } from './host-context.ts';
import { loggingClockImports } from './imports-logging-clock.ts';
import { headerImports } from './imports-headers.ts';
import { bufferImports } from './imports-buffers.ts';
import { propertyImports } from './imports-properties.ts';
import { sharedImports } from './imports-shared.ts';
import { httpImports } from './imports-http.ts';
import { metricImports } from './imports-metrics.ts';
import { lifecycleImports } from './imports-lifecycle.ts';
import { wasiImports, ProcExit } from './imports-wasi.ts';

export { FilterLoadError };

/** Envoy's `env` module, by ABI area. */
const ENV_AREAS: ImportArea[] = [loggingClockImports, headerImports, bufferImports, propertyImports, sharedImports, httpImports, metricImports, lifecycleImports];

interface Context {
  id: number;
  stream: Stream | null;
}

export class Vm implements HostContext {
  readonly rootContextId: number;
  failed: string | null = null;
  /** Set while the module runs _initialize or its allocator: see restricted.ts. */
  restriction: Restriction | null = null;
  readonly mem = new GuestMemory();
  readonly logThreshold: number;
  pluginName = '';
  pluginConfiguration: Uint8Array | null = null;
  httpCallResponse: { headers: Pair[]; body: Uint8Array } | null = null;
  readonly metrics = new Metrics();
  readonly sharedData: SharedData;
  readonly queueOwner: shared.QueueOwner = { notify: (token) => this.callRoot('proxy_on_queue_ready', token) };
  /** filter.ts hook: paused streams must give up when the VM fails. */
  onFailed: (() => void) | null = null;
  /**
   * Whether the module exports a callback that runs once the response exists (the response
   * phase, on_log, on_done, on_delete). Without one, nothing in the module can observe the
   * response or the stream's end, and filter.ts skips building what only those would see.
   */
  readonly seesStreamEnd: boolean;
  /**
   * The module's functions by name, looked up per callback: a Map is cheaper than the
   * exports object (a frozen object with one property per export).
   */
  private readonly callbacks = new Map<string, (...args: number[]) => any>();
  private readonly contexts = new Map<number, Context>();
  private current: Context | null = null;
  private effective: Context | null = null;
  private nextContextId = 1;
  private tick: NodeJS.Timeout | null = null;
  private doneWaiter: (() => void) | null = null;

  static async create(bytes: Uint8Array, options: VmOptions): Promise<Vm> {
    return new Vm(await compile(bytes), options);
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
    const malloc = this.callbacks.get('malloc') ?? this.callbacks.get('proxy_on_memory_allocate')!;
    this.mem.attach(instance.exports.memory as WebAssembly.Memory, (size) => this.restricted(DURING_MALLOC, malloc, size));
    this.rootContextId = this.nextContextId++;
    this.contexts.set(this.rootContextId, { id: this.rootContextId, stream: null });
    this.seesStreamEnd = STREAM_END_CALLBACKS.some((name) => this.callbacks.has(name));
  }

  /** Envoy's start sequence: _initialize, context create, vm start, configure. Throws FilterLoadError. */
  start(pluginConfiguration: Uint8Array): void {
    const root = this.contexts.get(this.rootContextId)!;
    if (this.has('_initialize')) {
      this.restricted(DURING_START, () => this.call(root, '_initialize'), 0);
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

  /** Runs `f(arg)` with only `restriction`'s host calls allowed (restricted.ts). */
  private restricted<R>(restriction: Restriction, f: (arg: number) => R, arg: number): R {
    const saved = this.restriction;
    this.restriction = restriction;
    try {
      return f(arg);
    } finally {
      this.restriction = saved;
    }
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
  addStream(stream: Stream): Stream {
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
    if (this.seesStreamEnd) {
      // Envoy's connection manager writes access logs (on_log) before it destroys the filters
      // (onDestroy: on_done, then on_delete).
      stream.open = Open.LOG;
      this.call(ctx, 'proxy_on_log', stream.id);
      stream.open = 0;
      this.call(ctx, 'proxy_on_done', stream.id);
      this.call(ctx, 'proxy_on_delete', stream.id);
    }
    this.contexts.delete(stream.id);
  }

  callRoot(name: string, a = 0, b = 0, c = 0, d = 0): void {
    const root = this.contexts.get(this.rootContextId);
    if (root) this.call(root, name, root.id, a, b, c, d);
  }

  stopTimers(): void {
    this.setTickPeriod(0);
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

  /** The module's memory (benches and tests watch its size). */
  get memory(): WebAssembly.Memory {
    return this.mem.memory;
  }

  metricsSnapshot(prefix = ''): MetricsSnapshot {
    return this.metrics.snapshot(prefix);
  }

  // ---- HostContext: what the import table asks of the VM -------------------------------

  contextId(): number {
    return (this.effective ?? this.current!).id;
  }

  stream(): Stream | null {
    return (this.effective ?? this.current!).stream;
  }

  setEffectiveContext(id: number): boolean {
    const ctx = this.contexts.get(id);
    if (!ctx) return false;
    this.effective = ctx;
    return true;
  }

  emitLog(level: number, message: string, contextId: number): void {
    const line: LogLine = { level: LOG_LEVEL_NAMES[level], message, contextId };
    const stream = this.contexts.get(contextId)?.stream;
    if (stream) stream.logs.push(line);
    this.options.log?.(line);
  }

  setTickPeriod(ms: number): void {
    if (this.tick) clearInterval(this.tick);
    this.tick = null;
    if (ms > 0) {
      this.tick = setInterval(() => this.callRoot('proxy_on_tick'), ms);
      this.tick.unref();
    }
  }

  done(): boolean {
    if (this.contextId() !== this.rootContextId || !this.doneWaiter) return false;
    this.doneWaiter();
    this.doneWaiter = null;
    return true;
  }

  /** Envoy's import table; every call checks the restriction in force itself (restricted.ts). */
  private imports(): WebAssembly.Imports {
    const env = Object.assign({}, ...ENV_AREAS.map((area) => area(this)));
    return { env, wasi_snapshot_preview1: wasiImports(this, 'wasi_snapshot_preview1'), wasi_unstable: wasiImports(this, 'wasi_unstable') };
  }
}
