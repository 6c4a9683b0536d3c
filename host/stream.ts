/**
 * One HTTP stream context: the maps and buffers its callbacks may touch, how it ends (local
 * reply, reset) and its request's attributes. filter.ts drives its callbacks; the host calls
 * read and change it.
 */
import { Attributes, type Plugin } from './attributes.ts';
import { requestHeaders, contentTypeOf, type FilterRequest } from './request.ts';
import type { Pair } from './pairs.ts';
import { isGrpcContentType } from './grpc-reply.ts';
import type { LogLevelName } from './abi.ts';

export interface LogLine {
  level: LogLevelName;
  message: string;
  /** The context that logged: the root context or a stream's. */
  contextId: number;
}

/** Which maps and buffers the current phase opens (Envoy clears its pointers on Continue). */
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
  /** The filter's `grpc_status` when it named a known code, else null (mapped from `status` for gRPC requests). */
  grpcStatus: number | null;
}

const EMPTY = new Uint8Array(0);

export class Stream {
  readonly requestHeaders: Pair[];
  responseHeaders: Pair[] = [];
  responseBody: Uint8Array = EMPTY;
  /** Open.* bits of the current phase. */
  open = 0;
  reply: LocalReply | null = null;
  resetDetails: string | null = null;
  logs: LogLine[] = [];
  /** Values the filter set with proxy_set_property (created on first use). */
  filterState: Map<string, Uint8Array> | null = null;
  /** Set while the stream is paused; continue_stream / close / local reply wake it. */
  wake: (() => void) | null = null;
  continued = false;
  /** Envoy's attributes of this request (`proxy_get_property`). */
  readonly attributes: Attributes;
  /** A gRPC request as received (Envoy decides this before any filter runs): local replies take the gRPC form. */
  readonly grpc: boolean;

  constructor(
    readonly id: number,
    request: FilterRequest,
    public requestBody: Uint8Array,
    plugin: Plugin,
  ) {
    this.requestHeaders = requestHeaders(request);
    this.grpc = isGrpcContentType(contentTypeOf(request));
    this.attributes = new Attributes(request, this, plugin);
  }
}
