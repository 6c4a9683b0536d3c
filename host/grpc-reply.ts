/**
 * Local replies to gRPC requests, as Envoy sends them: a gRPC client understands only
 * `grpc-status`, so a 403 with a JSON body would reach its stub as a protocol error. Envoy
 * answers HTTP 200, `content-type: application/grpc`, `grpc-status` (the filter's
 * `grpc_status` when it gave a known code, else mapped from the HTTP status as gRPC's
 * doc/http-grpc-status-mapping.md says) and the body as a percent-encoded `grpc-message`,
 * all in one HEADERS frame with end of stream (a trailers-only response), no body and no
 * content-length. The sidecar's own refusals use the same form.
 */
import type { Pair } from './pairs.ts';

/** Envoy's Grpc::Status::WellKnownGrpcStatus::MaximumKnown (UNAUTHENTICATED). */
const MAX_KNOWN_GRPC_STATUS = 16;

export const GrpcStatus = { OK: 0, UNKNOWN: 2, PERMISSION_DENIED: 7, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

/**
 * gRPC's content types: `application/grpc`, optionally `+proto`, `+json`, … or parameters
 * (Envoy's Grpc::Common::hasGrpcContentType); `application/grpc-web` is another protocol.
 */
export function isGrpcContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const type = value.toLowerCase();
  return type === 'application/grpc' || type.startsWith('application/grpc+') || type.startsWith('application/grpc;');
}

/** The http-grpc-status-mapping an intermediary applies to an HTTP status (Envoy's Grpc::Utility::httpToGrpcStatus). */
export function httpToGrpcStatus(status: number): number {
  switch (status) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** The filter's `grpc_status` argument as Envoy reads it: a known code, or none (the SDKs pass -1). */
export function givenGrpcStatus(raw: number): number | null {
  return raw >= 0 && raw <= MAX_KNOWN_GRPC_STATUS ? raw : null;
}

/**
 * grpc-message's percent-encoding (gRPC's PROTOCOL-HTTP2.md): bytes outside printable ASCII,
 * and `%` itself, as %XX of their UTF-8 bytes.
 */
export function encodeGrpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * A local reply's headers in gRPC form: `:status` becomes 200, the given headers stay (a
 * `grpc-status` among them wins, as in Envoy), content-length goes; `grpc-message` carries
 * the body without a trailing newline.
 */
export function grpcLocalReplyHeaders(status: number, headers: Pair[], body: string, grpcStatus: number | null): Pair[] {
  const message = body.endsWith('\n') ? body.slice(0, -1) : body;
  const replaced = (name: string) => name === 'content-length' || name === 'content-type' || (message !== '' && name === 'grpc-message');
  const out: Pair[] = headers.filter(([name]) => !replaced(name));
  out.push(['content-type', 'application/grpc']);
  if (!out.some(([name]) => name === 'grpc-status')) out.push(['grpc-status', String(grpcStatus ?? httpToGrpcStatus(status))]);
  if (message !== '') out.push(['grpc-message', encodeGrpcMessage(message)]);
  return out;
}
