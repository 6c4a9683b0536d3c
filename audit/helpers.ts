/**
 * The helper threads of `palisade audit verify` (audit/verify-worker.mjs), so a log is
 * checked on every core: while the main thread parses and checks entries, one helper hashes
 * the lines of the segment ahead of it, and every helper checks fingerprint signatures in
 * batches. ECDSA P-256 verification is most of a full verify's work; one message per batch
 * costs the main thread far less than one threadpool job per signature.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { KeyObject } from 'node:crypto';

/** Signatures sent to a helper in one message. */
const BATCH = 128;
const EMPTY = Buffer.alloc(0);

/** Complete lines of a segment, `start` to `end` of `bytes`, and their leaf hashes; `done`: the segment's last range. */
export interface SegmentRange {
  bytes: Buffer;
  start: number;
  end: number;
  leaves: Buffer;
  done: boolean;
}

export class HelperError extends Error {}

interface Helper {
  worker: Worker;
  pending: Map<number, { resolve(value: any): void; reject(err: Error): void }>;
  /** Caller keys this helper holds, by certificate id. */
  keys: Set<string>;
}

/** A signature to check: the caller certificate's id and key, the signed bytes and the signature (base64url). */
interface Job {
  id: string;
  key: KeyObject;
  signed: string;
  signature: string;
  resolve(ok: boolean): void;
}

export class VerifyHelpers {
  readonly #helpers: Helper[];
  #next = 0;
  #ids = 0;
  #batch: Job[] = [];
  #failure: HelperError | undefined;

  constructor(count = Math.min(availableParallelism(), 4)) {
    this.#helpers = Array.from({ length: Math.max(1, count) }, () => {
      const helper: Helper = { worker: new Worker(new URL('./verify-worker.mjs', import.meta.url), { execArgv: [] }), pending: new Map(), keys: new Set() };
      helper.worker.on('message', (m: { id: number; partial?: boolean }) => {
        const job = helper.pending.get(m.id);
        if (!m.partial) helper.pending.delete(m.id); // a segment is read in many replies
        job?.resolve(m);
      });
      helper.worker.on('error', (err) => this.#fail(helper, err));
      helper.worker.on('exit', () => this.#fail(helper, new Error('exited')));
      return helper;
    });
  }

  /**
   * Reads segment `file` (`size` bytes) in a helper, range by range: each range's bytes are
   * complete lines (`start` to `end` of `bytes`) with their leaf hashes; the last is `done`,
   * and what it holds past the last newline is a torn line.
   */
  async *segment(file: string, size: number): AsyncGenerator<SegmentRange> {
    const shared = new SharedArrayBuffer(size);
    const bytes = Buffer.from(shared);
    const replies: (SegmentRange | Error)[] = [];
    let wake: (() => void) | undefined;
    const take = (reply: SegmentRange | Error) => {
      replies.push(reply);
      wake?.();
    };
    const helper = this.#helpers[0]!;
    const id = this.#ids++;
    helper.pending.set(id, {
      resolve: (m: { start: number; end: number; leaves?: Uint8Array; done: boolean; error?: string }) => {
        if (m.error !== undefined) return take(new HelperError(`cannot read ${file}: ${m.error}`));
        take({ bytes, start: m.start, end: m.end, done: m.done, leaves: m.leaves ? Buffer.from(m.leaves.buffer, m.leaves.byteOffset, m.leaves.byteLength) : EMPTY });
      },
      reject: take,
    });
    helper.worker.postMessage({ id, kind: 'segment', file, shared });
    while (true) {
      while (replies.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      const reply = replies.shift()!;
      if (reply instanceof Error) throw reply;
      yield reply;
      if (reply.done) return;
    }
  }

  /** Whether `signature` over `signed` verifies with the certificate's key (ES256); sent with the next full batch, or at `flush`. */
  signature(cert: { id: string; key: KeyObject }, signed: string, signature: string): Promise<boolean> {
    return new Promise((resolve) => {
      this.#batch.push({ id: cert.id, key: cert.key, signed, signature, resolve });
      if (this.#batch.length >= BATCH) this.flush();
    });
  }

  /** Sends the signatures queued so far, to the next helper in turn. */
  flush(): void {
    const jobs = this.#batch;
    if (jobs.length === 0) return;
    this.#batch = [];
    const helper = this.#helpers[this.#next++ % this.#helpers.length]!;
    const keys: [string, Buffer][] = [];
    for (const job of jobs) {
      if (helper.keys.has(job.id)) continue;
      helper.keys.add(job.id);
      keys.push([job.id, job.key.export({ type: 'spki', format: 'der' })]);
    }
    // A helper that failed fails the verify (below): these are then never reported as verified.
    this.#send(helper, { kind: 'signatures', keys, jobs: jobs.map((j) => [j.id, j.signed, j.signature]) }).then(
      (m: { ok: Uint8Array }) => jobs.forEach((job, i) => job.resolve(m.ok[i] === 1)),
      () => jobs.forEach((job) => job.resolve(false)),
    );
  }

  /** Throws if a helper failed: what it was asked is unanswered, so nothing may pass for verified. */
  check(): void {
    if (this.#failure) throw this.#failure;
  }

  async close(): Promise<void> {
    await Promise.all(this.#helpers.map((h) => h.worker.terminate()));
  }

  #send(helper: Helper, message: Record<string, unknown>): Promise<any> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#ids++;
    return new Promise((resolve, reject) => {
      helper.pending.set(id, { resolve, reject });
      helper.worker.postMessage({ id, ...message });
    });
  }

  #fail(helper: Helper, err: Error): void {
    this.#failure ??= new HelperError(`a verify helper thread failed: ${err.message}`);
    for (const job of helper.pending.values()) job.reject(this.#failure);
    helper.pending.clear();
  }
}
