/**
 * The outbound sidecar's connection to one peer (a route) under one SVID: the first request
 * opens mTLS offering `h2` and `http/1.1` by ALPN. A peer that picks h2 gets every later
 * request as a stream on one HTTP/2 session (replaced when it closes); one that picks
 * HTTP/1.1 (or none) gets a pool of HTTP/1.1 connections, as before HTTP/2 existed here.
 *
 * Every connection is judged (`judge`: the server certificate's standing) before a request
 * goes on it, and the open ones again on every `sweep()`: a server whose SVID is revoked or
 * expires is cut off, as the inbound side cuts off such a client.
 */
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { X509Certificate } from 'node:crypto';
import type { ClientHttp2Session, OutgoingHttpHeaders } from 'node:http2';
import type { Readable } from 'node:stream';
import { Pool, buildConnector } from '../undici.ts';
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

/** Throws when the server certificate of a connection no longer stands (the connection is then dropped). */
export type ServerJudge = (cert: X509Certificate | undefined) => Promise<void>;

/** An open connection (HTTP/1.1) or session (HTTP/2) that was judged, and how to cut it. */
interface Judged {
  cert: X509Certificate | undefined;
  drop(): void;
}

export class PeerClient {
  #mode: Promise<{ h2: H2Session } | { pool: Pool }> | undefined;
  readonly #open = new Set<Judged>();
  /** Per HTTP/2 session, its judgement: one per session, awaited by each of its requests. */
  readonly #sessions = new WeakMap<ClientHttp2Session, Promise<void>>();

  constructor(
    private readonly url: string,
    private readonly tls: ConnectionOptions,
    private readonly headersTimeoutMs: number,
    private readonly judge: ServerJudge = async () => {},
  ) {}

  /** Judges every open connection again and drops those that no longer stand. */
  async sweep(): Promise<void> {
    await Promise.all([...this.#open].map((c) => this.judge(c.cert).catch(() => this.#drop(c))));
  }

  /** Whether the peer speaks HTTP/2 (known once the first connection is up). */
  async speaksH2(): Promise<boolean> {
    return 'h2' in (await this.#connected());
  }

  async request(r: PeerRequest): Promise<UpstreamAnswer> {
    const mode = await this.#connected();
    if ('h2' in mode) {
      await this.#judgedSession(await mode.h2.session());
      const headers: OutgoingHttpHeaders = { ...r.headers, ':method': r.method, ':path': r.path, ':authority': r.authority, ':scheme': 'https' };
      return mode.h2.request(headers, r.body, this.headersTimeoutMs);
    }
    const response = await mode.pool.request({ method: r.method, path: r.path, headers: { ...r.headers, host: r.authority }, body: r.body });
    return { status: response.statusCode, headers: response.headers, body: response.body, trailers: () => response.trailers, headersOnly: false };
  }

  /** An HTTP/1.1 Upgrade (e.g. websocket; HTTP/2 does not carry it here) on a connection of its own. */
  upgrade(r: PeerRequest, protocol: string): Promise<UpstreamAnswer> {
    const { hostname, port } = new URL(this.url);
    const options = {
      ...this.tls, host: hostname, port, method: r.method, path: r.path, headers: { ...r.headers, host: r.authority }, ALPNProtocols: ['http/1.1'],
      agent: false as const,
      createConnection: this.#judgedConnector({ ...this.tls, host: hostname, port: Number(port || 443), ALPNProtocols: ['http/1.1'] }),
    };
    return requestUpgrade(httpsRequest as typeof httpRequest, options, protocol);
  }

  async close(): Promise<void> {
    this.#open.clear();
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
    // No TLS session resumption: a resumed connection carries no server certificate to judge.
    const connect = buildConnector({ ...this.tls, maxCachedSessions: 0 });
    return new Pool(origin, {
      connections: 64, headersTimeout: this.headersTimeoutMs, keepAliveTimeout: 4_000,
      // undici's own connector, and the judgement before the connection is handed to the pool.
      connect: (options, callback) =>
        connect(options, (err, socket) => {
          if (err) return callback(err, null);
          this.#admit(socket as TLSSocket).then(() => callback(null, socket), (refused: Error) => callback(refused, null));
        }),
    });
  }

  /** For node:https (the Upgrade): a TLS connection handed over only once it was judged. */
  #judgedConnector(options: ConnectionOptions) {
    return (_request: unknown, callback: (err: Error | null, socket: TLSSocket) => void) => {
      const socket = tlsConnect(options);
      socket.once('secureConnect', () => this.#admit(socket).then(() => callback(null, socket), (refused: Error) => callback(refused, socket)));
      socket.once('error', (err) => callback(err, socket));
      return undefined;
    };
  }

  /** Judges a new connection before it is used. */
  #admit(socket: TLSSocket): Promise<void> {
    return this.#admitted(socket.getPeerX509Certificate(), () => socket.destroy(), socket);
  }

  /** Judges an HTTP/2 session once, however many requests wait for it. */
  #judgedSession(session: ClientHttp2Session): Promise<void> {
    let judgement = this.#sessions.get(session);
    if (!judgement) {
      judgement = this.#admitted((session.socket as TLSSocket).getPeerX509Certificate(), () => session.destroy(), session);
      this.#sessions.set(session, judgement);
    }
    return judgement;
  }

  /** A connection or session judged: kept for the sweeps until it closes, dropped at once if refused. */
  async #admitted(cert: X509Certificate | undefined, drop: () => void, closes: { once(event: 'close', listener: () => void): unknown }): Promise<void> {
    try {
      await this.judge(cert);
    } catch (err) {
      drop();
      throw err;
    }
    const judged: Judged = { cert, drop };
    this.#open.add(judged);
    closes.once('close', () => this.#open.delete(judged));
  }

  #drop(judged: Judged): void {
    this.#open.delete(judged);
    judged.drop();
  }
}
