/**
 * A raw HTTP/2 client for attacks that node:http2's client refuses to send (duplicate or
 * uppercase header names, connection-specific headers, oversized header blocks): frames
 * written by hand over mTLS with ALPN h2, header blocks as HPACK literals (RFC 7541 §6.2.2,
 * no indexing, no Huffman). It reads back only frame types, flags and error codes.
 */
import { connect, type TLSSocket } from 'node:tls';
import { constants } from 'node:http2';
import * as assert from 'uvu/assert';
import type { Svid } from '../../../agent/sidecar/svid.ts';

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, GOAWAY: 7, CONTINUATION: 9 } as const;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
export const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
const MAX_FRAME = 16_384;

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  /** RST_STREAM's or GOAWAY's error code. */
  code?: number;
}

export interface RawH2 {
  /** Sends one request's header block (CONTINUATION frames when it exceeds a frame) with END_STREAM. */
  send(stream: number, headers: [string, string][]): void;
  /** Cancels a stream (RST_STREAM CANCEL). */
  reset(stream: number): void;
  /** Whether the server still has the connection open. */
  isOpen(): boolean;
  /** Frames received so far. */
  frames: Frame[];
  closed: Promise<void>;
  close(): void;
}

export async function rawH2(port: number, caPem: string, svid: Svid): Promise<RawH2> {
  const socket: TLSSocket = connect({
    host: '127.0.0.1', port, ca: caPem, cert: svid.chainPem, key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
    ALPNProtocols: ['h2'], checkServerIdentity: () => undefined,
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  if (socket.alpnProtocol !== 'h2') throw new Error(`ALPN chose ${socket.alpnProtocol}`);
  const frames: Frame[] = [];
  socket.on(
    'data',
    frameReader((frame) => {
      if (frame.type === FRAME.SETTINGS && !(frame.flags & 1)) socket.write(frame9(FRAME.SETTINGS, 1, 0, Buffer.alloc(0))); // ACK
      frames.push(frame);
    }),
  );
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(PREFACE);
  socket.write(frame9(FRAME.SETTINGS, 0, 0, Buffer.alloc(0)));
  return {
    frames,
    closed,
    close: () => socket.destroy(),
    reset: (stream) => socket.write(frame9(FRAME.RST_STREAM, 0, stream, Buffer.from([0, 0, 0, 8]))),
    isOpen: () => !socket.destroyed && !socket.readableEnded,
    send(stream, headers) {
      const block = Buffer.concat(headers.map(([name, value]) => Buffer.concat([Buffer.from([0]), literal(name), literal(value)])));
      for (let at = 0, first = true; first || at < block.length; first = false) {
        const piece = block.subarray(at, at + MAX_FRAME);
        at += piece.length;
        const last = at >= block.length;
        socket.write(frame9(first ? FRAME.HEADERS : FRAME.CONTINUATION, (first ? END_STREAM : 0) | (last ? END_HEADERS : 0), stream, piece));
      }
    },
  };
}

/** Splits a byte stream of HTTP/2 frames (after the preface) into frames, for `onFrame` in order. */
export function frameReader(onFrame: (frame: Frame) => void): (chunk: Buffer) => void {
  let buffered = Buffer.alloc(0);
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 9) {
      const length = buffered.readUIntBE(0, 3);
      if (buffered.length < 9 + length) break;
      const type = buffered[3];
      const payload = buffered.subarray(9, 9 + length);
      const frame: Frame = { type, flags: buffered[4], stream: buffered.readUInt32BE(5) & 0x7fffffff };
      if (type === FRAME.RST_STREAM) frame.code = payload.readUInt32BE(0);
      if (type === FRAME.GOAWAY) frame.code = payload.readUInt32BE(4);
      buffered = buffered.subarray(9 + length);
      onFrame(frame);
    }
  };
}

/**
 * The header blocks nghttp2 must reset (PROTOCOL_ERROR) whatever follows: `base` (a valid
 * request) with a second `:path` or `:method`, an uppercase name, connection-specific
 * headers, an unknown pseudo-header, and a pseudo-header after a regular one.
 */
export function smuggled(base: [string, string][]): [string, string][][] {
  return [
    [...base, [':path', '/admin']],
    [...base, [':method', 'DELETE']],
    [...base, ['X-Palisade-Caller', 'spiffe://bank.example/ns/ops/sa/root']],
    [...base, ['transfer-encoding', 'chunked']],
    [...base, ['connection', 'keep-alive']],
    [...base, ['te', 'gzip']],
    [...base, [':x-smuggled', '1']],
    [['x-early', '1'], ...base],
  ];
}

/** Sends each block on its own stream and asserts that every one was reset (PROTOCOL_ERROR) and none answered. */
export async function assertEachReset(raw: RawH2, blocks: [string, string][][]): Promise<void> {
  const streams = blocks.map((_, i) => 1 + 2 * i);
  blocks.forEach((headers, i) => raw.send(streams[i], headers));
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && !streams.every((s) => raw.frames.some((f) => f.stream === s && f.type === FRAME.RST_STREAM)) && !raw.frames.some((f) => f.type === FRAME.GOAWAY)) {
    await new Promise((r) => setTimeout(r, 20));
  }
  for (const s of streams) {
    const answered = raw.frames.filter((f) => f.stream === s);
    assert.ok(answered.some((f) => f.type === FRAME.RST_STREAM && f.code === constants.NGHTTP2_PROTOCOL_ERROR), `stream ${s}: ${JSON.stringify(answered)}`);
    assert.not.ok(answered.some((f) => f.type === FRAME.HEADERS), `stream ${s} got a response`);
  }
}

/**
 * Rapid reset (CVE-2023-44487): HEADERS then RST_STREAM at once, in bursts, until the server
 * closes the connection or `max` streams were opened; asserts that the server cut it off
 * with GOAWAY ENHANCE_YOUR_CALM before `max`, and resolves with how many streams were opened.
 */
export async function assertRapidResetCut(raw: RawH2, headers: [string, string][], max = 5_000): Promise<number> {
  let opened = 0;
  for (let stream = 1; opened < max && raw.isOpen(); stream += 2, opened++) {
    raw.send(stream, headers);
    raw.reset(stream);
    if (opened % 10 === 9) await new Promise((r) => setTimeout(r, 2));
  }
  await Promise.race([raw.closed, new Promise((r) => setTimeout(r, 5_000))]);
  const goaway = raw.frames.find((f) => f.type === FRAME.GOAWAY);
  assert.is(goaway?.code, constants.NGHTTP2_ENHANCE_YOUR_CALM, JSON.stringify(raw.frames.filter((f) => f.type === FRAME.GOAWAY)));
  assert.ok(opened < max, `cut off after ${opened} streams`);
  return opened;
}

function frame9(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK string literal without Huffman coding: length as a 7-bit-prefix integer, then the bytes. */
function literal(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1');
  const length: number[] = [];
  let n = bytes.length;
  if (n < 127) length.push(n);
  else {
    length.push(127);
    n -= 127;
    while (n >= 128) {
      length.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    length.push(n);
  }
  return Buffer.concat([Buffer.from(length), bytes]);
}
