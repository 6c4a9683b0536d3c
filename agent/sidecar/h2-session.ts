/**
 * One HTTP/2 client session to an upstream (the application over h2c, a peer's inbound
 * sidecar over mTLS), multiplexing every request on one connection and replaced when it
 * closes, fails or receives GOAWAY. Requests stream both ways with HTTP/2 flow control
 * (nothing is buffered whole) and the response's trailers are kept.
 */
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, type SecureClientSessionOptions } from 'node:http2';
import type { Duplex, Readable } from 'node:stream';

/** An upstream's answer, whichever protocol carried it: the body streams, trailers are read once it ends. */
export interface UpstreamAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
  trailers(): Record<string, string | string[] | undefined> | undefined;
  /** HTTP/2: the response was one HEADERS frame that ended the stream (gRPC's trailers-only form): pass it on as that. */
  headersOnly: boolean;
  /** HTTP/1.1 Upgrade: the upstream switched protocols; this is its connection (websocket.ts). */
  upgraded?: Duplex;
}

export class UpstreamTimeoutError extends Error {}

export class H2Session {
  #session: ClientHttp2Session | undefined;
  #closed = false;

  /** `options` may carry TLS material and `createConnection` (an already negotiated socket). */
  constructor(
    private readonly origin: string,
    private readonly options: () => SecureClientSessionOptions,
  ) {}

  /** The live session, connected on first use. Resolves once the connection is up, rejects with its error. */
  async session(): Promise<ClientHttp2Session> {
    if (this.#closed) throw new Error('upstream session closed');
    const live = this.#session;
    if (live && !live.closed && !live.destroyed) return live;
    const session = connect(this.origin, this.options());
    this.#session = session;
    const forget = () => {
      if (this.#session === session) this.#session = undefined;
    };
    session.on('close', forget);
    session.on('goaway', forget);
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', (err) => {
        forget();
        reject(err);
      });
    });
    session.on('error', forget); // a later session error fails its streams; the next request reconnects
    session.unref();
    return session;
  }

  /**
   * Sends one request (pseudo-headers included) with `body` piped in, and resolves with the
   * response once its headers arrive (`headersTimeoutMs` at most: then the stream is cancelled).
   */
  async request(headers: OutgoingHttpHeaders, body: Readable | null, headersTimeoutMs: number): Promise<UpstreamAnswer> {
    const session = await this.session();
    const stream = session.request(headers, { endStream: body === null });
    if (body) {
      body.pipe(stream);
      // The caller went away or its body broke off: the upstream stream is cancelled, not ended.
      body.once('error', () => stream.close(constants.NGHTTP2_CANCEL));
      body.once('aborted', () => stream.close(constants.NGHTTP2_CANCEL));
    }
    let trailers: IncomingHttpHeaders | undefined;
    stream.once('trailers', (t) => (trailers = t));
    const { headers: response, ended } = await responseOf(stream, headersTimeoutMs);
    const { [':status']: status, ...rest } = response;
    return { status: Number(status), headers: rest, body: stream, trailers: () => trailers, headersOnly: ended };
  }

  close(): void {
    this.#closed = true;
    this.#session?.close();
  }
}

/** The response headers, and whether their HEADERS frame ended the stream. */
function responseOf(stream: ClientHttp2Stream, timeoutMs: number): Promise<{ headers: IncomingHttpHeaders; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.close(constants.NGHTTP2_CANCEL);
      reject(new UpstreamTimeoutError(`no response headers within ${timeoutMs} ms`));
    }, timeoutMs);
    stream.once('response', (headers, flags) => {
      clearTimeout(timer);
      resolve({ headers, ended: (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0 });
    });
    stream.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    stream.once('close', () => {
      clearTimeout(timer);
      reject(new Error(`upstream closed the stream (code ${stream.rstCode})`));
    });
  });
}
