/**
 * A helper thread of `palisade audit verify` (audit/helpers.ts): the work that needs nothing
 * but bytes and node:crypto, done off the main thread, which meanwhile parses and checks the
 * entries. Plain JavaScript, so it starts without the TypeScript loader, from the sources and
 * from dist/ alike.
 *
 * - `segment`: reads a segment into memory shared with the main thread, range by range, with
 *   the RFC 9162 leaf hash, SHA-256(0x00 ‖ line), of every complete line (32 bytes each).
 * - `signatures`: ES256 checks (ECDSA P-256, r‖s) of fingerprints, synchronously, one batch at a
 *   time: one message per batch rather than one threadpool job per signature.
 */
import { parentPort } from 'node:worker_threads';
import { createPublicKey, hash, verify } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';

/** Bytes read and hashed per reply: the main thread checks one range while the next is read. */
const RANGE_BYTES = 256 * 1024;

/**
 * Reads the segment into `bytes` (shared with the main thread) range by range; each reply
 * covers whole lines, `start` to `end` (past the last newline), with their leaf hashes.
 * The last reply is `done`; bytes after the last newline then are a torn line.
 */
function readRanges(fd, bytes, reply) {
  let read = 0;
  let start = 0;
  let scratch = Buffer.allocUnsafe(4096);
  while (true) {
    const got = read < bytes.length ? readSync(fd, bytes, read, Math.min(RANGE_BYTES, bytes.length - read), read) : 0;
    read += got;
    const last = bytes.lastIndexOf(10, read - 1);
    if (last >= start) {
      const ends = [];
      for (let nl = bytes.indexOf(10, start); nl >= 0 && nl <= last; nl = bytes.indexOf(10, nl + 1)) ends.push(nl);
      const leaves = Buffer.allocUnsafe(32 * ends.length);
      let from = start;
      ends.forEach((nl, i) => {
        const length = nl - from + 1;
        if (length > scratch.length) scratch = Buffer.allocUnsafe(2 * length);
        scratch[0] = 0;
        bytes.copy(scratch, 1, from, nl);
        leaves.set(hash('sha256', scratch.subarray(0, length), 'buffer'), 32 * i);
        from = nl + 1;
      });
      reply({ start, end: last + 1, leaves, done: false });
      start = last + 1;
    }
    // The file shrank while read, or ended: what was read is what is checked.
    if (got === 0) return reply({ start, end: read, done: true });
  }
}

/** Caller keys by certificate id, as the main thread sent them (SPKI DER). */
const keys = new Map();

parentPort.on('message', (m) => {
  if (m.kind === 'segment') {
    const fd = openSync(m.file, 'r');
    try {
      readRanges(fd, Buffer.from(m.shared), (reply) => parentPort.postMessage({ id: m.id, partial: !reply.done, ...reply }, reply.leaves ? [reply.leaves.buffer] : []));
    } catch (err) {
      parentPort.postMessage({ id: m.id, error: err.message, done: true });
    } finally {
      closeSync(fd);
    }
  } else if (m.kind === 'signatures') {
    for (const [id, spki] of m.keys) keys.set(id, createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }));
    const ok = new Uint8Array(m.jobs.length);
    m.jobs.forEach(([id, signed, signature], i) => {
      try {
        ok[i] = verify('sha256', Buffer.from(signed), { key: keys.get(id), dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64url')) ? 1 : 0;
      } catch {
        ok[i] = 0;
      }
    });
    parentPort.postMessage({ id: m.id, ok }, [ok.buffer]);
  }
});
