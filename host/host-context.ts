/**
 * What the import table (imports-*.ts, one file per ABI area) sees of the VM: module memory,
 * the context a call acts for, and the state Envoy keeps per VM. vm.ts implements it.
 */
import type { GuestMemory } from './guest-memory.ts';
import type { Stream, LogLine } from './stream.ts';
import type { Pair } from './pairs.ts';
import type { LogLevelName } from './abi.ts';
import type { SharedData } from './shared-data.ts';
import type { QueueOwner } from './shared.ts';
import type { Restriction } from './restricted.ts';
import type { Metrics } from './metrics.ts';

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

export type HostFunction = (...args: any[]) => number | void;
export type ImportArea = (host: HostContext) => Record<string, HostFunction>;

export interface HostContext {
  readonly mem: GuestMemory;
  readonly options: VmOptions;
  readonly rootContextId: number;
  /** Set while the module runs _initialize or its allocator: each import checks it first (restricted.ts). */
  readonly restriction: Restriction | null;
  /** Lines below this level are dropped (LogLevel number). */
  readonly logThreshold: number;
  readonly pluginName: string;
  /** Buffer 7: set only while proxy_on_configure runs. */
  readonly pluginConfiguration: Uint8Array | null;
  /** The http_call answer being delivered (map 6, buffer 4), else null. */
  httpCallResponse: { headers: Pair[]; body: Uint8Array } | null;
  readonly metrics: Metrics;
  readonly sharedData: SharedData;
  readonly queueOwner: QueueOwner;
  /** The context a host call acts for: the effective context if one was set, else the called one. */
  contextId(): number;
  /** Its stream, or null for the root context. */
  stream(): Stream | null;
  /** proxy_set_effective_context: false when no such context exists. */
  setEffectiveContext(id: number): boolean;
  emitLog(level: number, message: string, contextId: number): void;
  callRoot(name: string, a?: number, b?: number, c?: number, d?: number): void;
  /** proxy_set_tick_period_milliseconds: 0 stops the tick. */
  setTickPeriod(ms: number): void;
  /** proxy_done: false when the root context is not waiting to be done. */
  done(): boolean;
}
