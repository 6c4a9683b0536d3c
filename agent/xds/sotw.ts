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

/** What a state-of-the-world xDS service serves: one version of a named resource set. */
export interface SotwSource {
  typeUrl: string;
  /** Current version and encoded resources by name. */
  snapshot(): { version: string; resources: Map<string, AnyMessage> };
  /** Calls `listener` on every change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
}

export interface SotwHooks {
  onAck?(node: string, version: string): void;
  onNack?(node: string, version: string, message: string): void;
  onStreamCount?(delta: 1 | -1): void;
}

/**
 * The state-of-the-world xDS protocol (StreamX/FetchX) over any resource source, shared by
 * SDS and ECDS. Per stream: the first request (no nonce) is answered with the named
 * resources; a request carrying the latest nonce is an ACK (no error_detail) or a NACK
 * (error_detail set: reported, the client keeps its previous version, nothing is resent
 * until the next change); requests with an older nonce are stale and ignored, except that
 * a changed resource list in a current request is answered. Every change is pushed to
 * every open stream.
 */
export function sotwHandlers(source: SotwSource, hooks: SotwHooks = {}) {
  function respond(names: string[]): Omit<DiscoveryResponse, 'nonce'> {
    const { version, resources } = source.snapshot();
    const wanted = names.length === 0 ? [...resources.keys()] : names; // no names: everything, like SPIRE
    return {
      version_info: version,
      resources: wanted.flatMap((name) => (resources.has(name) ? [resources.get(name)!] : [])),
      type_url: source.typeUrl,
    };
  }

  function stream(call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>): void {
    let names: string[] | null = null; // null until the first request
    let lastNonce = '';
    let nonceCounter = 0;
    let node = 'unknown';
    const prefix = randomBytes(4).toString('hex');
    const send = () => {
      if (names === null || call.writableEnded) return;
      lastNonce = `${prefix}-${++nonceCounter}`;
      call.write({ ...respond(names), nonce: lastNonce });
    };
    const unsubscribe = source.subscribe(send);
    hooks.onStreamCount?.(1);
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      unsubscribe();
      hooks.onStreamCount?.(-1);
    };
    call.on('data', (request: DiscoveryRequest) => {
      if (request.type_url && request.type_url !== source.typeUrl) {
        call.emit('error', { code: GrpcStatus.INVALID_ARGUMENT, details: `this stream serves ${source.typeUrl}, not ${request.type_url}` });
        return;
      }
      node = request.node?.id || node;
      const requested = [...(request.resource_names ?? [])].sort();
      const nonce = request.response_nonce ?? '';
      if (nonce === '') {
        names = requested;
        return send();
      }
      if (nonce !== lastNonce) return; // stale: an answer to a response we have since replaced
      const nack = request.error_detail && (request.error_detail.code || request.error_detail.message);
      if (nack) hooks.onNack?.(node, request.version_info ?? '', request.error_detail?.message ?? '');
      else hooks.onAck?.(node, request.version_info ?? '');
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
    callback(null, { ...respond([...(request.resource_names ?? [])]), nonce: randomBytes(8).toString('hex') });
  }

  return { stream, fetch };
}
