/**
 * The sidecar's own answers (refusals, upstream failures), in the form the caller can read:
 * JSON `{ error, … }` for HTTP, and for a gRPC request what Envoy sends for any local reply
 * (host/grpc-reply.ts): HTTP 200, trailers-only, `grpc-status` mapped from the HTTP status
 * (or the given code) and the JSON as `grpc-message`.
 */
import type { Http2ServerResponse, OutgoingHttpHeaders } from 'node:http2';
import type { ServerResponse } from 'node:http';
import { grpcLocalReplyHeaders } from '../../host/grpc-reply.ts';
import type { Pair } from '../../host/pairs.ts';
import { sendJson, wantsGrpc, relay, headerObject, type ServerReply, type ServerRequest } from './http.ts';
import type { UpstreamAnswer } from './h2-session.ts';

export interface LocalReplyOptions {
  headers?: Record<string, string>;
  /** The gRPC status when the HTTP status's mapping would mislead (e.g. UNIMPLEMENTED for a gRPC call to an HTTP/1.1 application). */
  grpcStatus?: number;
}

export function replyLocally(req: ServerRequest, res: ServerReply, status: number, body: unknown, opts: LocalReplyOptions = {}): void {
  if (!wantsGrpc(req)) return sendJson(res, status, body, opts.headers);
  sendTrailersOnly(res, grpcLocalReplyHeaders(status, [], JSON.stringify(body), opts.grpcStatus ?? null));
}

/** A gRPC local reply for an upstream failure, as the filter's upstream callback returns it. */
export function grpcFailure(status: number, body: unknown, grpcStatus?: number): { status: number; headers: Pair[] } {
  return { status: 200, headers: grpcLocalReplyHeaders(status, [], JSON.stringify(body), grpcStatus ?? null) };
}

/**
 * HTTP 200 whose one HEADERS frame ends the stream (gRPC's trailers-only response), so a
 * gRPC client reads `grpc-status` from it; over HTTP/1.1 the same headers and an empty body.
 */
export function sendTrailersOnly(res: ServerReply, headers: Pair[]): void {
  sendHeadersOnly(res, 200, headerObject(headers));
}

/** A response that is headers alone; over HTTP/2 in one HEADERS frame with END_STREAM. */
export function sendHeadersOnly(res: ServerReply, status: number, headers: OutgoingHttpHeaders): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if ('stream' in res) {
    const h2 = res as Http2ServerResponse;
    h2.statusCode = status;
    h2.stream.respond({ ...headers, ':status': status }, { endStream: true });
    return;
  }
  (res as ServerResponse).writeHead(status, headers).end();
}

/**
 * An upstream's answer to the caller: headers, then the body streamed, then its trailers;
 * an answer that was headers alone stays headers alone (gRPC errors come that way).
 */
export function forwardAnswer(res: ServerReply, status: number, headers: OutgoingHttpHeaders, answer: UpstreamAnswer, withTrailers: boolean): void {
  if (answer.headersOnly) {
    answer.body.resume();
    return sendHeadersOnly(res, status, headers);
  }
  res.writeHead(status, headers as Record<string, string>);
  relay(answer.body, res, withTrailers ? answer.trailers : undefined);
}
