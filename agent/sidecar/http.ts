/** HTTP plumbing shared by the inbound and outbound listeners, for HTTP/1.x and HTTP/2 (node:http2's compatibility API) alike. */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { errors } from '../undici.ts';
import { UpstreamTimeoutError } from './h2-session.ts';
import { isGrpcContentType } from '../../host/grpc-reply.ts';
import type { Pair } from '../../host/pairs.ts';

/** A request as a listener receives it, over HTTP/1.x or HTTP/2. */
export type ServerRequest = IncomingMessage | Http2ServerRequest;
export type ServerReply = ServerResponse | Http2ServerResponse;

/** Connection-scoped headers (RFC 9110 §7.6.1): never forwarded by a proxy. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host']);

/**
 * Copies headers a proxy may forward: drops hop-by-hop headers, the ones the Connection
 * header names, HTTP/2 pseudo-headers (each hop sets its own), and any for which `drop`
 * returns true.
 */
export function forwardable(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
  drop?: (name: string) => boolean,
): Record<string, string | string[]> {
  const named = headers.connection === undefined ? null : new Set(String(headers.connection).toLowerCase().split(',').map((s) => s.trim()));
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue; // never a name an altered prototype adds
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || name.startsWith(':') || named?.has(name) || drop?.(name)) continue;
    out[name] = value;
  }
  return out;
}

/** An upstream's response headers as pairs (the filter's view): hop-by-hop ones dropped, repeats (set-cookie) kept apart. */
export function responsePairs(headers: Record<string, string | string[] | undefined>): Pair[] {
  const pairs: Pair[] = [];
  const kept = forwardable(headers);
  for (const name in kept) {
    if (!Object.hasOwn(kept, name)) continue;
    const value = kept[name];
    if (typeof value === 'string') pairs.push([name, value]);
    else for (const v of value) pairs.push([name, v]);
  }
  return pairs;
}

/** Header pairs as node's header object (repeats become arrays), which HTTP/2 responses take. */
export function headerObject(pairs: Pair[]): OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of pairs) {
    const seen = out[name];
    if (seen === undefined) out[name] = value;
    else if (Array.isArray(seen)) seen.push(value);
    else out[name] = [seen, value];
  }
  return out;
}

export function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export function sendJson(res: ServerReply, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Streams an upstream body into the response: the response is cut if the body breaks off,
 * the body dropped if the caller goes away. Plain `pipe` rather than `stream.pipeline`,
 * which costs an AbortController and a DOMException (stack trace included) per request.
 * `trailers`, read when the body has ended, go after it (gRPC's status rides in them).
 */
export function relay(body: Readable, res: ServerReply, trailers?: () => Record<string, string | string[] | undefined> | undefined): void {
  body.on('error', () => res.destroy());
  res.on('close', () => release(body));
  if (!trailers) {
    body.pipe(res as ServerResponse);
    return;
  }
  body.pipe(res as ServerResponse, { end: false });
  body.once('end', () => {
    const kept = forwardable(trailers() ?? {});
    if (Object.keys(kept).length > 0) res.addTrailers(kept as Record<string, string>);
    res.end();
  });
}

/**
 * Lets go of an upstream body nobody will read: one still arriving is cancelled, one that has
 * ended is left to close by itself. Resetting a finished HTTP/2 stream sends a RST_STREAM for
 * nothing, and servers count those as rapid reset (nghttp2: 1,000, then 33 a second) and then
 * drop the whole connection with GOAWAY INTERNAL_ERROR, failing every request on it.
 */
export function release(body: Readable): void {
  if (!body.readableEnded) body.destroy();
}

/** A request whose answer must come as gRPC (content-type application/grpc…): local replies take the gRPC form. */
export function wantsGrpc(req: ServerRequest): boolean {
  return isGrpcContentType(firstHeader(req.headers['content-type']));
}

/** How an upstream failure is answered: a timeout is 504, anything else unreachable is 503. */
export function upstreamFailure(err: unknown): { status: 503 | 504; code: string } {
  if (err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError || err instanceof errors.ConnectTimeoutError || err instanceof UpstreamTimeoutError) {
    return { status: 504, code: 'upstream_timeout' };
  }
  return { status: 503, code: 'upstream_unavailable' };
}

/** Whether a request carries a body: HTTP/1.x says so in its headers, HTTP/2 by not ending the stream with them. */
export function hasBody(req: ServerRequest): boolean {
  if (req.httpVersionMajor === 2) return !(req as Http2ServerRequest).stream.readableEnded && !(req as Http2ServerRequest).stream.endAfterHeaders;
  const headers = req.headers;
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');
}

/** Listens on host:port (loopback, an ephemeral port by default) and resolves with the bound address. */
export async function listen(server: Server, port = 0, host = '127.0.0.1'): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server.address() as AddressInfo;
}

/** Stops accepting, lets requests in flight finish for up to 2 s, then cuts what is left. */
export async function drain(server: Server): Promise<void> {
  const closed = new Promise((resolve) => server.close(resolve));
  server.closeIdleConnections();
  const timer = setTimeout(() => server.closeAllConnections(), 2_000);
  await closed;
  clearTimeout(timer);
}
