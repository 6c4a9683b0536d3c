/**
 * The outbound sidecar's connection to one peer (a route) under one SVID: the first request
 * opens mTLS offering `h2` and `http/1.1` by ALPN. A peer that picks h2 gets every later
 * request as a stream on one HTTP/2 session (replaced when it closes); one that picks
 * HTTP/1.1 (or none) gets a pool of HTTP/1.1 connections, as before HTTP/2 existed here.
 */
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { OutgoingHttpHeaders } from 'node:http2';
import type { Readable } from 'node:stream';
import { Pool } from '../undici.ts';
import { request as httpsRequest } from 'node:https';
import type { request as httpRequest } from 'node:http';
import { requestUpgrade } from './websocket.ts';
import { H2Session, type UpstreamAnswer } from './h2-session.ts';

export interface PeerRequest {
  method: string;
  path: string;
  authority: string;
  headers: Record<string, string | string[]>;
  body: Readable | null;
}

export class PeerClient {
  #mode: Promise<{ h2: H2Session } | { pool: Pool }> | undefined;

  constructor(
    private readonly url: string,
    private readonly tls: ConnectionOptions,
    private readonly headersTimeoutMs: number,
  ) {}

  /** Whether the peer speaks HTTP/2 (known once the first connection is up). */
  async speaksH2(): Promise<boolean> {
    return 'h2' in (await this.#connected());
  }

  async request(r: PeerRequest): Promise<UpstreamAnswer> {
    const mode = await this.#connected();
    if ('h2' in mode) {
      const headers: OutgoingHttpHeaders = { ...r.headers, ':method': r.method, ':path': r.path, ':authority': r.authority, ':scheme': 'https' };
      return mode.h2.request(headers, r.body, this.headersTimeoutMs);
    }
    const response = await mode.pool.request({ method: r.method, path: r.path, headers: { ...r.headers, host: r.authority }, body: r.body });
    return { status: response.statusCode, headers: response.headers, body: response.body, trailers: () => response.trailers, headersOnly: false };
  }

  /** An HTTP/1.1 Upgrade (e.g. websocket; HTTP/2 does not carry it here) on a connection of its own. */
  upgrade(r: PeerRequest, protocol: string): Promise<UpstreamAnswer> {
    const { hostname, port } = new URL(this.url);
    const options = { ...this.tls, host: hostname, port, method: r.method, path: r.path, headers: { ...r.headers, host: r.authority }, ALPNProtocols: ['http/1.1'] };
    return requestUpgrade(httpsRequest as typeof httpRequest, options, protocol);
  }

  async close(): Promise<void> {
    const mode = await this.#mode?.catch(() => undefined);
    if (!mode) return;
    if ('h2' in mode) mode.h2.close();
    else await mode.pool.close();
  }

  /** The first connection decides the protocol; a failed one is forgotten, so the next request tries again. */
  #connected(): Promise<{ h2: H2Session } | { pool: Pool }> {
    this.#mode ??= this.#negotiate().catch((err) => {
      this.#mode = undefined;
      throw err;
    });
    return this.#mode;
  }

  async #negotiate(): Promise<{ h2: H2Session } | { pool: Pool }> {
    const origin = new URL(this.url).origin;
    const { hostname, port } = new URL(origin);
    const open = (protocols: string[]) =>
      new Promise<TLSSocket>((resolve, reject) => {
        const socket = tlsConnect({ ...this.tls, host: hostname, port: Number(port || 443), ALPNProtocols: protocols });
        socket.once('secureConnect', () => resolve(socket));
        socket.once('error', reject);
      });
    const first = await open(['h2', 'http/1.1']);
    if (first.alpnProtocol === 'h2') {
      let spare: TLSSocket | undefined = first;
      // The probe's connection becomes the first session's; later sessions offer h2 alone.
      const h2 = new H2Session(origin, () => ({
        createConnection: () => {
          const socket = spare ?? tlsConnect({ ...this.tls, host: hostname, port: Number(port || 443), ALPNProtocols: ['h2'] });
          spare = undefined;
          return socket;
        },
      }));
      return { h2 };
    }
    first.destroy();
    return { pool: this.#pool(origin) };
  }

  #pool(origin: string): Pool {
    return new Pool(origin, { connections: 64, headersTimeout: this.headersTimeoutMs, keepAliveTimeout: 4_000, connect: this.tls });
  }
}
