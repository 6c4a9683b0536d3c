/**
 * The audit directory: `origin` (the log's name), `segments/<first seq>.jsonl` (entries, one
 * JSON line each, append-only), `checkpoints/<size>.note` with `<size>.pem` beside it (the
 * signing SVID's chain), and `certs/<sha256>.pem` (callers' certificates, by DER hash).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const SEGMENTS = 'segments';
export const CHECKPOINTS = 'checkpoints';
export const CERTS = 'certs';
export const ORIGIN = 'origin';

const DIGITS = 16;
export const numbered = (n: number) => String(n).padStart(DIGITS, '0');

export const segmentFile = (dir: string, firstSeq: number) => path.join(dir, SEGMENTS, `${numbered(firstSeq)}.jsonl`);
export const checkpointFile = (dir: string, size: number) => path.join(dir, CHECKPOINTS, `${numbered(size)}.note`);
/** The chain that signed a checkpoint file: same name, `.pem`. */
export const chainFileOf = (checkpoint: string) => checkpoint.replace(/\.note$/, '') + '.pem';
export const certFile = (dir: string, sha256: string) => path.join(dir, CERTS, `${sha256}.pem`);

/** Files named `<16 digits><ext>` in `sub`, in order. */
function listNumbered(dir: string, sub: string, ext: string): string[] {
  const folder = path.join(dir, sub);
  if (!existsSync(folder)) return [];
  const pattern = new RegExp(`^[0-9]{${DIGITS}}${ext.replace('.', '\\.')}$`);
  return readdirSync(folder).filter((f) => pattern.test(f)).sort().map((f) => path.join(folder, f));
}

export const listSegments = (dir: string) => listNumbered(dir, SEGMENTS, '.jsonl');
export const listCheckpoints = (dir: string) => listNumbered(dir, CHECKPOINTS, '.note');

/** One stored line: its text, bytes and where it is (for messages: `segments/….jsonl:12`, made when asked for). */
export class StoredLine {
  constructor(
    readonly bytes: Buffer,
    readonly file: string,
    readonly line: number,
  ) {}
  get text(): string {
    return this.bytes.toString('utf8');
  }
  get where(): string {
    return `${this.file}:${this.line}`;
  }
}

/** Every complete line of every segment, in order. A last line without its newline is reported as `torn`. */
export function* storedLines(dir: string): Generator<StoredLine | { torn: string; where: string }> {
  for (const file of listSegments(dir)) {
    const data = readFileSync(file);
    const name = path.relative(dir, file);
    let start = 0;
    let line = 1;
    for (let nl = data.indexOf(10); nl >= 0; nl = data.indexOf(10, start)) {
      yield new StoredLine(data.subarray(start, nl), name, line++);
      start = nl + 1;
    }
    if (start < data.length) yield { torn: data.subarray(start).toString('utf8'), where: `${name}:${line}` };
  }
}
