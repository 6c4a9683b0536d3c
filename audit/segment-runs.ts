/**
 * A segment as `palisade audit verify` reads it: in chunks of memory shared with the helper
 * threads, cut into runs of complete lines that the helpers check side by side
 * (audit/entry-runs.ts): RUN_LINES lines from a multiple of RUN_LINES in the log, so that
 * a run is a complete subtree of the log's tree, hashed on its helper (the segment's first
 * and last runs may be shorter). A chunk is reused once every
 * run in it has been checked: fresh memory costs a page fault per 4 KiB, which was most of
 * the main thread's time when each segment had its own.
 */
import { closeSync, openSync, readSync } from 'node:fs';

/** Lines per run: one message each way per run, and enough runs to keep every helper busy. */
export const RUN_LINES = 1024;
/** Bytes of a chunk (more when a run's lines need more). */
export const CHUNK_BYTES = 4 << 20;

/** Shared memory holding runs that are being checked. */
export interface Chunk {
  bytes: Buffer;
  /** Runs in it not yet checked. */
  runs: number;
  /** Nothing more will be read into it. */
  full: boolean;
}

/** Consecutive complete lines of a segment: `start` to `end` (just past a newline) of its chunk's bytes, `offset` in the file. */
export interface SegmentRun {
  chunk: Chunk;
  offset: number;
  start: number;
  end: number;
  count: number;
}

/** The chunks of one verify, reused from segment to segment. */
export class Chunks {
  readonly #free: Buffer[] = [];

  /** A chunk of at least `min` bytes. */
  take(min: number): Chunk {
    const reused = this.#free.pop();
    const bytes = reused && reused.length >= min ? reused : Buffer.from(new SharedArrayBuffer(Math.max(min, CHUNK_BYTES)));
    return { bytes, runs: 0, full: false };
  }

  /** Run `run` has been checked: its chunk is free once nothing else in it waits. */
  checked(run: SegmentRun): void {
    run.chunk.runs--;
    this.#release(run.chunk);
  }

  /** Nothing more is read into `chunk`. */
  filled(chunk: Chunk): void {
    chunk.full = true;
    this.#release(chunk);
  }

  #release(chunk: Chunk): void {
    if (chunk.full && chunk.runs === 0) this.#free.push(chunk.bytes);
  }
}

/**
 * Segment `file`, whose first entry is `first`, as runs, each as soon as its lines are read; `torn` at the end: bytes
 * follow the last newline (or the file shrank while read: what was read is what is checked).
 */
export function* segmentRuns(file: string, first: number, chunks: Chunks): Generator<SegmentRun, { torn: boolean }> {
  const fd = openSync(file, 'r');
  try {
    let position = 0;
    let chunk = chunks.take(CHUNK_BYTES);
    /** Where the chunk's first byte is in the file. */
    let base = 0;
    /** Bytes at the start of `chunk` carried over from the chunk before: lines not yet in a run. */
    let carried = 0;
    while (true) {
      const { bytes } = chunk;
      const got = readSync(fd, bytes, carried, bytes.length - carried, position);
      position += got;
      const filled = bytes.subarray(0, carried + got);
      let [start, end, count] = [0, 0, 0];
      for (let nl = filled.indexOf(10, end); nl >= 0; nl = filled.indexOf(10, end)) {
        [end, count] = [nl + 1, count + 1];
        if ((first + count) % RUN_LINES === 0 || (got === 0 && filled.indexOf(10, end) < 0)) {
          chunk.runs++;
          yield { chunk, offset: base + start, start, end, count };
          [start, count, first] = [end, 0, first + count];
        }
      }
      if (got === 0) {
        chunks.filled(chunk);
        return { torn: filled.length > start };
      }
      // Lines short of a run go to the next chunk; one bigger, when no run fit in this one.
      const next = chunks.take(start === 0 ? 2 * bytes.length : filled.length - start + 1);
      carried = filled.copy(next.bytes, 0, start);
      base += start;
      chunks.filled(chunk);
      chunk = next;
    }
  } finally {
    closeSync(fd);
  }
}
