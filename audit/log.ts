/**
 * The agent's audit log writer. Entries are batched: everything appended during one turn of
 * the event loop goes to the current segment in one write (a synchronous one: a write into
 * the page cache costs less than a thread-pool round trip), and `append` resolves only once
 * that write returned (the OS has the bytes: a killed process loses nothing acknowledged;
 * `fsync: 'batch'` also waits for the disk, surviving power loss). A checkpoint is signed
 * every `checkpointEvery` entries or `checkpointIntervalMs`, after an fsync of the entries
 * it commits to. A write that fails rejects every entry of its batch and is cut back off
 * the file, so the tree and the disk never disagree. On open, a torn tail (a write cut short
 * by a crash) is cut off and the tree rebuilt from the segments.
 */
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, truncateSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createHash, randomBytes, type KeyObject } from 'node:crypto';
import path from 'node:path';
import { writeFileAtomic } from '../platform/files.ts';
import { toPem } from '../spiffe/pki.ts';
import { MerkleTree, leafHash, leafHashAt } from './merkle.ts';
import { encodeEntry, type Decided } from './entry.ts';
import { signCheckpoint, parseCheckpoint, originIdentity } from './checkpoint.ts';
import { CERTS, CHECKPOINTS, ORIGIN, SEGMENTS, certFile, chainFileOf, checkpointFile, listCheckpoints, listSegments, segmentFile } from './files.ts';

/** The SVID that signs checkpoints (agent/identity's agent and the sidecar's SvidSource fit). */
export interface CheckpointSigner {
  svid(): { spiffeId: string; chainPem: string; privateKey: KeyObject };
}

export type FsyncPolicy = 'checkpoint' | 'batch';

export interface AuditLogOptions {
  dir: string;
  signer: CheckpointSigner;
  /** Sign a checkpoint after this many new entries (default 1000) … */
  checkpointEvery?: number;
  /** … or this long after the first entry it does not cover (default 1000 ms). */
  checkpointIntervalMs?: number;
  /** `checkpoint` (default): fsync before each checkpoint; `batch`: before each batch is acknowledged. */
  fsync?: FsyncPolicy;
  /** Start a new segment past this size (default 64 MiB) or entry count (default none). */
  maxSegmentBytes?: number;
  maxSegmentEntries?: number;
  /** Failures that reject no request (a checkpoint that could not be written). */
  onWarning?: (message: string, err: Error) => void;
}

export const AUDIT_DEFAULTS = { checkpointEvery: 1000, checkpointIntervalMs: 1000, fsync: 'checkpoint' as FsyncPolicy, maxSegmentBytes: 64 * 1024 * 1024 };

export class AuditWriteError extends Error {}

/** A caller certificate an entry refers to: its DER and that DER's SHA-256 (hex, `certificateId`). */
export interface CertificateRef {
  id: string;
  der: Buffer;
}

/** An entry as written: its position (leaf index) and the exact line stored, whose leaf hash the tree holds (for inclusion proofs). */
export interface WrittenEntry {
  seq: number;
  line: string;
}

interface Pending {
  decided: Decided;
  cert?: CertificateRef;
  resolve(written: WrittenEntry): void;
  reject(err: Error): void;
}

interface Segment {
  first: number;
  file: string;
  handle: FileHandle | null;
  /** Bytes and entries the tree already holds. */
  bytes: number;
  entries: number;
}

export class AuditLog {
  readonly origin: string;
  readonly tree = new MerkleTree();
  readonly #opts: Required<Omit<AuditLogOptions, 'onWarning' | 'maxSegmentEntries'>> & Pick<AuditLogOptions, 'onWarning' | 'maxSegmentEntries'>;
  #segment: Segment;
  #queue: Pending[] = [];
  #scheduled = false;
  #serial: Promise<void> = Promise.resolve();
  #checkpointed = 0;
  /** Entries known to be on disk (fsynced): those of closed segments. */
  #synced = 0;
  #signing: Promise<void> = Promise.resolve();
  #checkpointsQueued = 0;
  #latest: { text: string; chainPem: string } | null = null;
  /** The file of the latest checkpoint. */
  #latestFile = '';
  #timer: NodeJS.Timeout | undefined;
  readonly #knownCerts = new Set<string>();
  #closed = false;
  /** Where a batch is encoded before its one write: reused, grown when a batch needs more. */
  #batchBytes: Buffer = Buffer.allocUnsafe(256 * 1024);

  private constructor(opts: AuditLogOptions, origin: string, segment: Segment) {
    this.#opts = { ...AUDIT_DEFAULTS, ...opts };
    this.origin = origin;
    this.#segment = segment;
  }

  /** Opens (or creates) the log in `dir`: repairs a torn tail, rebuilds the tree, checks it against the last checkpoint. */
  static open(opts: AuditLogOptions): AuditLog {
    const { dir } = opts;
    for (const sub of [SEGMENTS, CHECKPOINTS, CERTS]) mkdirSync(path.join(dir, sub), { recursive: true });
    const self = opts.signer.svid().spiffeId;
    const originFile = path.join(dir, ORIGIN);
    if (!existsSync(originFile)) writeFileAtomic(originFile, `${self}#${randomBytes(4).toString('hex')}\n`);
    const origin = readFileSync(originFile, 'utf8').trim();
    if (originIdentity(origin) !== self) throw new AuditWriteError(`the audit log in ${dir} belongs to ${originIdentity(origin)}, not ${self}`);

    const files = listSegments(dir);
    const log = new AuditLog(opts, origin, { first: 0, file: segmentFile(dir, 0), handle: null, bytes: 0, entries: 0 });
    for (const [i, file] of files.entries()) log.#load(file, i === files.length - 1);
    for (const cert of readdirSync(path.join(dir, CERTS))) log.#knownCerts.add(cert.replace(/\.pem$/, ''));
    log.#resume();
    log.#timer = setInterval(() => {
      if (log.tree.size > log.#checkpointed && log.#checkpointDue) void log.checkpoint();
    }, log.#opts.checkpointIntervalMs);
    log.#timer.unref();
    return log;
  }

  /** Appends one entry; resolves with its sequence number and stored line once it is written, rejects with AuditWriteError if it could not be. */
  append(decided: Decided, cert?: CertificateRef): Promise<WrittenEntry> {
    if (this.#closed) return Promise.reject(new AuditWriteError('the audit log is closed'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ decided, cert, resolve, reject });
      if (this.#scheduled) return;
      this.#scheduled = true;
      // After the poll phase: every request whose bytes arrived in this turn joins the batch.
      setImmediate(() =>
        void this.#run(() => {
          this.#scheduled = false;
          return this.#flush();
        }),
      );
    });
  }

  /** SHA-256 (hex) of a certificate's DER: how entries refer to it. */
  static certificateId(der: Buffer): string {
    return createHash('sha256').update(der).digest('hex');
  }

  /**
   * Signs a checkpoint for the entries written so far (after an fsync), unless the last one
   * covers them. It waits for the writes queued before it and for the checkpoint being
   * signed, but writes queued after it do not wait for its fsync: under load an fsync takes
   * milliseconds, and every request would stall behind it.
   */
  checkpoint(): Promise<void> {
    this.#checkpointsQueued++;
    const next = Promise.all([this.#serial, this.#signing]).then(() => this.#sign());
    this.#signing = next.catch(() => {}).finally(() => this.#checkpointsQueued--);
    return next;
  }

  async #sign(): Promise<void> {
    const size = this.tree.size;
    if (size === this.#checkpointed) return;
    const handle = this.#segment.handle;
    try {
      const root = this.tree.root(size);
      // The fsync starts now, before any later write, and covers every entry up to `size`:
      // those of earlier segments were synced when the segment was closed.
      await handle?.sync().catch((err) => {
        if (this.#synced < size) throw err; // not a handle closed after its own fsync
      });
      const svid = this.#opts.signer.svid();
      const text = signCheckpoint({ origin: this.origin, size, root, time: Date.now() }, svid.privateKey);
      const file = checkpointFile(this.#opts.dir, size);
      this.#storeChain(chainFileOf(file), svid.chainPem);
      writeFileAtomic(file, text);
      this.#checkpointed = size;
      this.#latest = { text, chainPem: svid.chainPem };
      this.#latestFile = file;
    } catch (err) {
      this.#opts.onWarning?.('audit checkpoint not written', err as Error);
    }
  }

  /**
   * The chain beside a checkpoint: while the SVID has not rotated, a hard link to the last
   * checkpoint's (one link(2), where a new file costs ten times as much: at 100,000 entries a
   * second that is a hundred checkpoints); written anew when it changed or the link fails.
   */
  #storeChain(file: string, chainPem: string): void {
    if (this.#latest?.chainPem === chainPem) {
      try {
        linkSync(chainFileOf(this.#latestFile), file);
        return;
      } catch {
        // the last one's chain is gone, or a file is in the way (a crash between the two writes): written below
      }
    }
    writeFileAtomic(file, chainPem);
  }

  /** No checkpoint queued or being signed: a new one may be started for entries past the last. */
  get #checkpointDue(): boolean {
    return this.#checkpointsQueued === 0;
  }

  get dir(): string {
    return this.#opts.dir;
  }

  /** The newest checkpoint and the chain that signed it, or null before the first. */
  latestCheckpoint(): { text: string; chainPem: string } | null {
    return this.#latest;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#timer);
    await this.checkpoint();
    this.#closed = true;
    await this.#run(async () => {
      await this.#segment.handle?.sync().catch(() => {});
      await this.#segment.handle?.close().catch(() => {});
      this.#segment.handle = null;
    });
  }

  /** Runs `fn` after everything queued before it: writes, rotations and checkpoints never interleave. */
  #run(fn: () => Promise<void>): Promise<void> {
    const next = this.#serial.then(fn);
    this.#serial = next.catch(() => {});
    return next;
  }

  async #flush(): Promise<void> {
    const batch = this.#queue;
    this.#queue = [];
    if (batch.length === 0) return;
    const first = this.tree.size;
    // Each line is encoded once, into the batch's bytes, and hashed there. Byte 0 is not
    // written: it is where the first line's leaf-hash prefix goes (a newline for the others).
    const lines: string[] = new Array(batch.length);
    const hashes: string[] = new Array(batch.length);
    let bytes = this.#batchBytes;
    let length = 1;
    let prev = first === 0 ? '' : this.tree.leaf(first - 1).toString('base64');
    for (let i = 0; i < batch.length; i++) {
      const line = (lines[i] = encodeEntry(first + i, prev, batch[i]!.decided));
      // UTF-8 takes at most 3 bytes per UTF-16 code unit; +1 for the newline.
      if (length + 3 * line.length + 1 > bytes.length) bytes = this.#batchBytes = grown(bytes, length, 3 * line.length + 1);
      const end = length + bytes.write(line, length);
      prev = hashes[i] = leafHashAt(bytes, length, end);
      bytes[end] = 10;
      length = end + 1;
    }
    try {
      for (const p of batch) if (p.cert) this.#rememberCert(p.cert);
      const segment = await this.#writable();
      writeAll(segment.handle!.fd, bytes.subarray(1, length));
      if (this.#opts.fsync === 'batch') await segment.handle!.sync();
      segment.bytes += length - 1;
      segment.entries += batch.length;
    } catch (err) {
      await this.#cutBack();
      const failure = new AuditWriteError(`audit log write failed: ${(err as Error).message}`);
      for (const p of batch) p.reject(failure);
      return;
    }
    for (const hash of hashes) this.tree.append(hash);
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve({ seq: first + i, line: lines[i]! });
    if (this.tree.size - this.#checkpointed >= this.#opts.checkpointEvery && this.#checkpointDue) void this.checkpoint();
  }

  /** The segment to write to: a new one past the size limits, reopened after a failure. */
  async #writable(): Promise<Segment> {
    let segment = this.#segment;
    const full = segment.bytes >= this.#opts.maxSegmentBytes || (this.#opts.maxSegmentEntries !== undefined && segment.entries >= this.#opts.maxSegmentEntries);
    if (full && segment.entries > 0) {
      await segment.handle?.sync();
      this.#synced = this.tree.size;
      await segment.handle?.close();
      const first = this.tree.size;
      segment = this.#segment = { first, file: segmentFile(this.#opts.dir, first), handle: null, bytes: 0, entries: 0 };
    }
    if (!segment.handle) {
      segment.handle = await open(segment.file, 'a');
      const { size } = await segment.handle.stat();
      // Left over from a write that failed and could not be cut back then.
      if (size > segment.bytes) await segment.handle.truncate(segment.bytes);
    }
    return segment;
  }

  /** After a failed write: the file back to what the tree holds; the handle reopened next time. */
  async #cutBack(): Promise<void> {
    const segment = this.#segment;
    await segment.handle?.truncate(segment.bytes).catch(() => {});
    await segment.handle?.close().catch(() => {});
    segment.handle = null;
  }

  #rememberCert({ id, der }: CertificateRef): void {
    if (this.#knownCerts.has(id)) return;
    writeFileAtomic(certFile(this.#opts.dir, id), toPem(der));
    this.#knownCerts.add(id);
  }

  /** Reads one segment into the tree; in the last one, cuts off a torn tail. */
  #load(file: string, last: boolean): void {
    const data = readFileSync(file);
    const first = Number(path.basename(file, '.jsonl'));
    if (first !== this.tree.size) throw new AuditWriteError(`${file} starts at entry ${first}, expected ${this.tree.size}: the log was altered; run palisade audit verify`);
    let start = 0;
    let entries = 0;
    for (let nl = data.indexOf(10); nl >= 0; nl = data.indexOf(10, start)) {
      const line = data.subarray(start, nl);
      if (seqOf(line) !== this.tree.size) {
        if (last && !data.subarray(nl + 1).includes(10)) break; // a torn last write: cut below
        throw new AuditWriteError(`${file}: line ${entries + 1} is not entry ${this.tree.size}: the log was altered; run palisade audit verify`);
      }
      this.tree.append(leafHash(line));
      entries++;
      start = nl + 1;
    }
    if (start < data.length) {
      if (!last) throw new AuditWriteError(`${file} ends without a newline but is not the last segment`);
      truncateSync(file, start);
      this.#opts.onWarning?.(`audit log: cut ${data.length - start} bytes of a torn write off ${file}`, new Error('torn tail'));
    }
    this.#segment = { first, file, handle: null, bytes: start, entries };
  }

  /** Picks up after the last checkpoint, which must agree with the entries on disk. */
  #resume(): void {
    const last = listCheckpoints(this.#opts.dir).at(-1);
    if (!last) return;
    const text = readFileSync(last, 'utf8');
    const cp = parseCheckpoint(text);
    if (cp.size > this.tree.size || !cp.root.equals(this.tree.root(cp.size))) {
      throw new AuditWriteError(`the audit log in ${this.#opts.dir} does not match its checkpoint ${path.basename(last)}; run palisade audit verify`);
    }
    this.#checkpointed = cp.size;
    this.#latest = { text, chainPem: readFileSync(chainFileOf(last), 'utf8') };
    this.#latestFile = last;
  }
}

/** The `seq` of an entry line, or -1 when the line is not an entry. */
function seqOf(line: Buffer): number {
  try {
    const entry = JSON.parse(line.toString('utf8'));
    return Number.isSafeInteger(entry?.seq) ? entry.seq : -1;
  } catch {
    return -1;
  }
}

/** A buffer with room for `more` bytes past the first `used` of `bytes`, which it keeps. */
function grown(bytes: Buffer, used: number, more: number): Buffer {
  const next = Buffer.allocUnsafe(Math.max(2 * bytes.length, used + more));
  bytes.copy(next, 0, 0, used);
  return next;
}

function writeAll(fd: number, bytes: Buffer): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done);
}
