import { randomBytes } from 'node:crypto';
import { status as GrpcStatus, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall } from '@grpc/grpc-js';

/** google.protobuf.Any as @grpc/proto-loader hands it over. */
export interface AnyMessage {
  type_url: string;
  value: Buffer;
}

export interface DiscoveryRequest {
  version_info?: string;
  node?: { id?: string; cluster?: string };
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string } | null;
}

export interface DiscoveryResponse {
  version_info: string;
  resources: AnyMessage[];
  type_url: string;
  nonce: string;
}

/** One version of the resources a subscription gets; a source may carry more (ECDS: the policies). */
export interface SotwSnapshot {
  version: string;
  /** Encoded resources in the order they are sent. */
  resources: AnyMessage[];
}

/** What a state-of-the-world xDS service serves. */
export interface SotwSource<S extends SotwSnapshot = SotwSnapshot> {
  typeUrl: string;
  /**
   * What a subscription to `names` (empty: every resource) gets now, or undefined when none
   * of them exists: Envoy NACKs a response without resources, so nothing is sent instead.
   */
  snapshot(names: string[]): S | undefined;
  /** Calls `listener` on every change with the changed names (none: all); returns the unsubscribe function. */
  subscribe(listener: (changed?: string[]) => void): () => void;
}

/** One client's stream as its hooks see it. */
export interface SotwStream<S extends SotwSnapshot = SotwSnapshot> {
  /** The client's node id, once it sent one. */
  node?: string;
  /** The last response sent, until the client answers it. */
  pending?: S;
  /** The last response the client acknowledged: what it runs now. */
  acked?: S;
}

export interface SotwHooks<S extends SotwSnapshot = SotwSnapshot> {
  onSend?(stream: SotwStream<S>, response: S): void;
  /** Called once per response, after `stream.acked` became `response`. */
  onAck?(stream: SotwStream<S>, response: S): void;
  /** Called once per response; `keptVersion` is the version the client says it still runs. */
  onNack?(stream: SotwStream<S>, response: S, keptVersion: string, message: string): void;
  onStreamCount?(delta: 1 | -1): void;
}

/** The resources of `all` a subscription to `names` (empty: every one, like SPIRE) wants, by name. */
export function selectByName<T>(all: Map<string, T>, names: string[]): [string, T][] {
  return [...all].filter(([name]) => names.length === 0 || names.includes(name)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The state-of-the-world xDS protocol (StreamX/FetchX) over any resource source, shared by
 * SDS and ECDS. Per stream: the first request (no nonce) is answered with the named
 * resources; a request carrying the latest nonce answers that response, once: an ACK, or a
 * NACK when error_detail is set at all (reported; the client keeps its previous version and
 * nothing is resent until the next change). Requests with an older nonce are stale and
 * ignored, except that a changed resource list in a current request is answered. A change
 * is pushed to every open stream subscribed to a changed resource; nothing is sent while
 * none of a stream's resources exists.
 */
export function sotwHandlers<S extends SotwSnapshot>(source: SotwSource<S>, hooks: SotwHooks<S> = {}) {
  const open = new Map<ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>, SotwStream<S>>();

  const wire = (snapshot: S, nonce: string): DiscoveryResponse => ({
    version_info: snapshot.version,
    resources: snapshot.resources,
    type_url: source.typeUrl,
    nonce,
  });

  function stream(call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>): void {
    const state: SotwStream<S> = {};
    let names: string[] | null = null; // null until the first request
    let lastNonce = '';
    let nonceCounter = 0;
    const prefix = randomBytes(4).toString('hex');
    const send = (changed?: string[]) => {
      if (names === null || call.writableEnded) return;
      if (changed && names.length > 0 && !changed.some((name) => names!.includes(name))) return;
      const snapshot = source.snapshot(names);
      if (!snapshot) return;
      lastNonce = `${prefix}-${++nonceCounter}`;
      state.pending = snapshot;
      call.write(wire(snapshot, lastNonce));
      hooks.onSend?.(state, snapshot);
    };
    const unsubscribe = source.subscribe(send);
    open.set(call, state);
    hooks.onStreamCount?.(1);
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      unsubscribe();
      open.delete(call);
      hooks.onStreamCount?.(-1);
    };
    call.on('data', (request: DiscoveryRequest) => {
      if (request.type_url && request.type_url !== source.typeUrl) {
        call.emit('error', { code: GrpcStatus.INVALID_ARGUMENT, details: `this stream serves ${source.typeUrl}, not ${request.type_url}` });
        return;
      }
      state.node = request.node?.id || state.node;
      const requested = [...(request.resource_names ?? [])].sort();
      const nonce = request.response_nonce ?? '';
      if (nonce === '') {
        names = requested;
        return send();
      }
      if (nonce !== lastNonce) return; // stale: an answer to a response we have since replaced
      const answered = state.pending;
      state.pending = undefined;
      // Presence decides, as in the xDS protocol: an empty error_detail is still a NACK (fail closed).
      if (answered && request.error_detail) hooks.onNack?.(state, answered, request.version_info ?? '', request.error_detail.message ?? '');
      else if (answered) {
        state.acked = answered;
        hooks.onAck?.(state, answered);
      }
      if (names === null || requested.join('\0') !== names.join('\0')) {
        names = requested;
        send();
      }
    });
    call.on('end', () => {
      end();
      call.end();
    });
    call.on('error', end);
    call.on('close', end);
    call.on('cancelled', end);
  }

  function fetch(call: ServerUnaryCall<DiscoveryRequest, DiscoveryResponse>, callback: sendUnaryData<DiscoveryResponse>): void {
    const request = call.request;
    if (request.type_url && request.type_url !== source.typeUrl) {
      callback({ code: GrpcStatus.INVALID_ARGUMENT, details: `this service serves ${source.typeUrl}` });
      return;
    }
    const snapshot = source.snapshot(request.resource_names ?? []);
    if (!snapshot) return callback({ code: GrpcStatus.UNAVAILABLE, details: 'none of the requested resources exists yet' });
    callback(null, wire(snapshot, randomBytes(8).toString('hex')));
  }

  return {
    stream,
    fetch,
    /** The open streams, for sources that keep what their clients still run. */
    streams: (): Iterable<SotwStream<S>> => open.values(),
    /** Ends every open stream. */
    endAll(): void {
      for (const call of open.keys()) call.end();
    },
  };
}
