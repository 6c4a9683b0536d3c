/**
 * The inbound sidecar's connection to the application, in the application's protocol
 * (`--app-protocol`): `http1`, a pool of HTTP/1.1 connections (undici), or `h2c`, one
 * cleartext HTTP/2 session multiplexing every request (gRPC services). Either way the
 * request body streams in and the response streams out, trailers included.
 */
import type { Readable } from 'node:stream';
import { request as httpRequest } from 'node:http';
import { Pool } from '../undici.ts';
import { requestUpgrade } from './websocket.ts';
import { H2Session, type UpstreamAnswer } from './h2-session.ts';
import { headerObject } from './http.ts';
import type { Pair } from '../../host/pairs.ts';

export const APP_PROTOCOLS = ['http1', 'h2c'] as const;
export type AppProtocol = (typeof APP_PROTOCOLS)[number];

export interface AppRequest {
  method: string;
  path: string;
  authority: string;
  /** The request headers as the filter left them, pseudo-headers excluded. */
  headers: Pair[];
  body: Readable | null;
}

export interface AppClient {
  readonly protocol: AppProtocol;
  request(request: AppRequest): Promise<UpstreamAnswer>;
  /** HTTP/1.1 Upgrade (`protocol`: the Upgrade header, e.g. websocket); http1 applications only. */
  upgrade?(request: AppRequest, protocol: string): Promise<UpstreamAnswer>;
  close(): Promise<void>;
}

export interface AppClientLimits {
  appConnections: number;
  appHeadersTimeoutMs: number;
  appBodyTimeoutMs: number;
}

export function appClient(url: string, protocol: AppProtocol, limits: AppClientLimits): AppClient {
  const origin = new URL(url).origin;
  return protocol === 'h2c' ? h2cClient(origin, limits) : http1Client(origin, limits);
}

function http1Client(origin: string, limits: AppClientLimits): AppClient {
  const pool = new Pool(origin, {
    connections: limits.appConnections,
    headersTimeout: limits.appHeadersTimeoutMs,
    bodyTimeout: limits.appBodyTimeoutMs,
    keepAliveTimeout: 4_000,
  });
  return {
    protocol: 'http1',
    async request({ method, path, authority, headers, body }) {
      const response = await pool.request({ method, path, headers: withHost(headers, authority), body });
      return { status: response.statusCode, headers: response.headers, body: response.body, trailers: () => response.trailers, headersOnly: false };
    },
    upgrade({ method, path, authority, headers }, protocol) {
      const { hostname, port } = new URL(origin);
      return requestUpgrade(httpRequest, { host: hostname, port, method, path, headers: { ...headerObject(headers), host: authority }, timeout: limits.appHeadersTimeoutMs }, protocol);
    },
    close: () => pool.close(),
  };
}

/** undici's flat header list, the Host last. */
function withHost(headers: Pair[], authority: string): string[] {
  const flat: string[] = [];
  for (const [name, value] of headers) flat.push(name, value);
  flat.push('host', authority);
  return flat;
}

/**
 * Over h2c. A gRPC body is a stream of messages that may stay open as long as the call: no
 * body timeout here (the gRPC deadline, `grpc-timeout`, goes to the application with the request).
 */
function h2cClient(origin: string, limits: AppClientLimits): AppClient {
  const session = new H2Session(origin, () => ({}));
  return {
    protocol: 'h2c',
    request({ method, path, authority, headers, body }) {
      const outgoing = { ...headerObject(headers), ':method': method, ':path': path, ':authority': authority, ':scheme': 'http' };
      return session.request(outgoing, body, limits.appHeadersTimeoutMs);
    },
    async close() {
      session.close();
    },
  };
}
