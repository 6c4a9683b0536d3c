/**
 * One cleartext port for HTTP/1.1 and HTTP/2 with prior knowledge (RFC 9113 §3.3): a
 * connection that opens with the HTTP/2 preface goes to the HTTP/2 server, any other to the
 * HTTP/1.1 server it arrived on, which keeps its own limits and timeouts.
 */
import type { Server } from 'node:http';
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** Routes `http1`'s connections (undecided after `timeoutMs`: closed); returns the live HTTP/2 sessions (for closing). */
export function acceptH2cPriorKnowledge(http1: Server, h2: Http2Server, timeoutMs = 10_000): Set<ServerHttp2Session> {
  const sessions = new Set<ServerHttp2Session>();
  h2.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  const http1Connection = http1.listeners('connection');
  http1.removeAllListeners('connection');
  http1.on('connection', (socket: Socket) => {
    let seen = Buffer.alloc(0);
    const sniff = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const h2like = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (h2like && seen.length < PREFACE.length) return; // not decided yet
      socket.removeListener('data', sniff);
      socket.removeListener('error', onError);
      socket.removeListener('timeout', onTimeout);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(seen);
      // The HTTP/2 session reads what is buffered itself; node:http needs the socket flowing again.
      if (h2like) h2.emit('connection', socket);
      else {
        for (const listener of http1Connection) listener.call(http1, socket);
        socket.resume();
      }
    };
    // Until a server owns the socket, its failures and silence are ours to end.
    const onError = () => socket.destroy();
    const onTimeout = () => socket.destroy();
    socket.on('error', onError);
    socket.setTimeout(timeoutMs, onTimeout);
    socket.on('data', sniff);
  });
  return sessions;
}
