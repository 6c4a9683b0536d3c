/**
 * What `palisade audit verify` checks of each entry, on a run of consecutive lines of a
 * segment: the line's leaf hash, then the entry (valid JSON, its number, `prev` equal to the
 * leaf hash of the line before, the log's own service, the fingerprint's evidence and, when
 * asked, its signature), in order, stopping at the first entry that fails. An entry needs
 * nothing but its own line and the leaf hash of the line before it, so the helper threads
 * (audit/verify-worker.ts) check runs side by side and the main thread (audit/verify.ts)
 * only builds the tree from their leaf hashes, in order.
 */
import { isAscii } from 'node:buffer';
import { existsSync, readFileSync } from 'node:fs';
import { leafHash, subtreeNodes } from './merkle.ts';
import { certFile } from './files.ts';
import { EvidenceError, type FingerprintEvidence } from './evidence.ts';
import type { AuditEntry } from './entry.ts';

/** Consecutive complete lines of one segment, and where they are in the log. */
export interface EntryRun {
  /** Memory shared with the main thread; the run is `start` to `end` (just past a newline), at `offset` in the segment file. */
  bytes: Uint8Array;
  offset: number;
  start: number;
  end: number;
  /** Lines in the run. */
  count: number;
  /** The entry number of its first line, and that line's number in the segment (from 1). */
  first: number;
  /** Its lines are a complete subtree of the log's tree: its inner hashes are wanted too. */
  subtree: boolean;
  line: number;
  /** The base64 leaf hash of the entry before the first ('' for entry 0): what its `prev` must say. */
  prev: string;
  /** The log's segment files, and which one this is (the entry after a run's last is only read to tell a swap from a deletion). */
  segments: string[];
  segment: number;
  /** The segment as messages name it (relative to the log). */
  name: string;
}

export interface RunResult {
  /** The leaf hash of every line of the run, 32 bytes each (up to the failure, if any). */
  leaves: Uint8Array;
  /** The run's inner hashes (subtreeNodes), when asked and it passed. */
  nodes?: Uint8Array;
  /** What is wrong with its first entry that fails: the message verify stops with. */
  failure?: string;
}

/** A signature check's answer on a helper thread: run there and then, so the first failure named is the earliest. */
export type Evidence = FingerprintEvidence<boolean>;

/** The checks of every run of a log: its agent's service and how fingerprints are checked. */
export class EntryChecker {
  #bytes = Buffer.alloc(0);
  constructor(
    private readonly service: string,
    private readonly evidence: Evidence,
  ) {}

  check(run: EntryRun): RunResult {
    const { count } = run;
    // Shared memory is read byte by byte (as atomics), at a third of the speed of a plain
    // copy; one copy of the run makes every read after it (hashing, decoding) a plain one.
    const bytes = this.#own(run.end - run.start);
    bytes.set(run.bytes.subarray(run.start, run.end));
    const leaves = new Uint8Array(32 * count);
    // An entry is almost always ASCII: then each line decodes byte for character, the cheapest way.
    const encoding = isAscii(bytes) ? 'latin1' : 'utf8';
    let prev = run.prev;
    for (let k = 0, from = 0; k < count; k++) {
      const nl = bytes.indexOf(10, from);
      const leaf = leafHash(bytes.subarray(from, nl));
      leaves.set(leaf, 32 * k);
      const failure = this.#entry(bytes.toString(encoding, from, nl), run.first + k, prev, run, k, run.offset + nl + 1);
      if (failure !== undefined) return { leaves: leaves.subarray(0, 32 * k), failure };
      prev = leaf.toString('base64');
      from = nl + 1;
    }
    return run.subtree ? { leaves, nodes: subtreeNodes(leaves) } : { leaves };
  }

  /** `length` bytes of this thread's own memory, reused from run to run. */
  #own(length: number): Buffer {
    if (this.#bytes.length < length) this.#bytes = Buffer.allocUnsafe(Math.max(length, 2 * this.#bytes.length));
    return this.#bytes.subarray(0, length);
  }

  /** What is wrong with entry `n` (line `k` of the run, the next line at byte `next` of the file), if anything. */
  #entry(text: string, n: number, prev: string, run: EntryRun, k: number, next: number): string | undefined {
    const at = () => `entry ${n} (${run.name}:${run.line + k})`;
    let entry: AuditEntry;
    try {
      entry = JSON.parse(text);
    } catch {
      return `${at()}: not valid JSON: the entry was altered`;
    }
    if ((entry?.v !== 1 && entry?.v !== 2) || !Number.isSafeInteger(entry.seq)) return `${at()}: not an audit entry`;
    if (entry.seq !== n) {
      if (entry.seq === n + 1 && seqOf(lineAfter(run, next)) === n) return `${at()}: entries ${n} and ${n + 1} are swapped`;
      if (entry.seq < n) return `${at()}: entry ${entry.seq} appears again where entry ${n} belongs: an entry was inserted`;
      return `${at()}: found entry ${entry.seq} where entry ${n} belongs: entries ${n}–${entry.seq - 1} were deleted`;
    }
    if (entry.prev !== prev) return `entry ${n - 1}: altered (entry ${n}, ${run.name}:${run.line + k}, recorded another hash for it)`;
    if (entry.service !== this.service) return `${at()}: service ${entry.service} is not the log's agent ${this.service}`;
    try {
      if (this.evidence.check(entry, entry.v === 2) === false) return `${at()}: fingerprint signature does not verify with the caller's certificate`;
    } catch (err) {
      // The entry is the forger's input: anything in it that cannot be checked (a field of
      // another type, a certificate that does not parse) fails that entry, with its position.
      return `${at()}: ${err instanceof EvidenceError ? err.message : `malformed evidence (${(err as Error).message})`}`;
    }
    return undefined;
  }
}

/** The text of the line at byte `offset` of the run's segment, or of the next segment's first line at its end (only to tell a swap from a deletion). */
function lineAfter(run: EntryRun, offset: number): string | undefined {
  let data = readFileSync(run.segments[run.segment]!);
  if (offset >= data.length) {
    if (run.segment + 1 >= run.segments.length) return undefined;
    [data, offset] = [readFileSync(run.segments[run.segment + 1]!), 0];
  }
  const nl = data.indexOf(10, offset);
  return nl < 0 ? undefined : data.subarray(offset, nl).toString('utf8');
}

function seqOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text).seq;
  } catch {
    return undefined;
  }
}

/** A caller certificate of the log by its id (SHA-256 of its DER, hex): the PEM in certs/, or undefined. */
export function storedCertificate(dir: string): (id: string) => string | undefined {
  return (id) => {
    const file = certFile(dir, id);
    return /^[0-9a-f]{64}$/.test(id) && existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  };
}
