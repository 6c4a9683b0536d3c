/**
 * HTTP/1.1 Upgrade (WebSocket) through the sidecar. The upgrade request is decided like any
 * other (fingerprint, identity context, policy: `GET` and its path), sent on to the
 * application with its Upgrade header, and once both the policy and the application said
 * yes the two connections are piped to each other, both ways, until either side closes.
 * Over HTTP/2 there is no Upgrade (RFC 8441's extended CONNECT is not offered).
 */
import { ServerResponse, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Pair } from '../../host/pairs.ts';
import type { UpstreamAnswer } from './h2-session.ts';

/** An upgrade request whose decision and upstream run through the ordinary request handling. */
export function isUpgrade(req: { headers: Record<string, string | string[] | undefined>; httpVersionMajor: number }): boolean {
  return req.httpVersionMajor === 1 && typeof req.headers.upgrade === 'string' && /(^|,)\s*upgrade\s*(,|$)/i.test(String(req.headers.connection ?? ''));
}

/**
 * Runs `handle` for an 'upgrade' event as for a request: its response (a refusal, a denial)
 * goes out on the connection, which then closes, unless the handler spliced it.
 */
export function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, handle: (req: IncomingMessage, res: ServerResponse) => void): void {
  socket.on('error', () => socket.destroy());
  if (head.length > 0) socket.unshift(head);
  const res = new ServerResponse(req);
  res.assignSocket(socket as Socket);
  res.shouldKeepAlive = false;
  res.once('finish', () => socket.end());
  handle(req, res);
}

/**
 * The application switched protocols: the caller gets the 101 with the headers the filter
 * left (the Upgrade and Connection pair restated: hop-by-hop, they never reach the filter),
 * then bytes flow both ways. `res` closes when the connection does, which ends its log line.
 */
export function spliceUpgrade(res: ServerResponse, upgrade: string, headers: Pair[], upstream: Duplex): void {
  const socket = res.socket;
  if (!socket) {
    upstream.destroy();
    return;
  }
  res.detachSocket(socket);
  res.statusCode = 101;
  const lines = ['HTTP/1.1 101 Switching Protocols', 'connection: Upgrade', `upgrade: ${upgrade}`];
  for (const [name, value] of headers) if (name !== 'content-length') lines.push(`${name}: ${value}`);
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    socket.destroy();
    upstream.destroy();
    res.emit('close');
  };
  socket.once('close', end);
  upstream.once('close', end);
  upstream.on('error', end);
  socket.pipe(upstream).pipe(socket);
}

/**
 * Sends an Upgrade request on a connection of its own (`send`: node's http or https
 * `request`) and resolves with the switched connection, or with the ordinary response when
 * the other side declined (its status and body go back to the caller as they are).
 */
export function requestUpgrade(send: (options: RequestOptions) => ClientRequest, options: RequestOptions, protocol: string): Promise<UpstreamAnswer> {
  return new Promise((resolve, reject) => {
    const req = send({ ...options, agent: false, headers: { ...options.headers, connection: 'Upgrade', upgrade: protocol } });
    req.once('upgrade', (res: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (head.length > 0) socket.unshift(head);
      resolve({ status: 101, headers: res.headers, body: socket, trailers: () => undefined, headersOnly: false, upgraded: socket });
    });
    req.once('response', (res: IncomingMessage) => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: res, trailers: () => res.trailers, headersOnly: false }));
    req.once('error', reject);
    req.end();
  });
}
