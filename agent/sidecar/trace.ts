/** W3C Trace Context (`traceparent`): kept when valid, created when absent or malformed. */
import { randomFillSync } from 'node:crypto';

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
/** All-zero ids are invalid in W3C Trace Context. */
const ZEROS = /^0+$/;

export interface TraceContext {
  traceId: string;
  /** The traceparent to send on: same trace, a new span id for this hop. */
  traceparent: string;
}

/** Random bytes drawn in batches (one fill per 256 ids), so an id is one string, no syscall. */
const pool = Buffer.alloc(16 * 256);
let used = pool.length;

/** `bytes` random bytes as hex; never all zeros, which W3C Trace Context forbids for both ids. */
function randomHex(bytes: 8 | 16): string {
  let hex;
  do {
    if (used + bytes > pool.length) {
      randomFillSync(pool);
      used = 0;
    }
    hex = pool.toString('hex', used, (used += bytes));
  } while (ZEROS.test(hex));
  return hex;
}

export function continueTrace(incoming: string | string[] | undefined): TraceContext {
  const m = typeof incoming === 'string' ? TRACEPARENT.exec(incoming.trim()) : null;
  const valid = m && m[1] !== 'ff' && !ZEROS.test(m[2]) && !ZEROS.test(m[3]);
  const traceId = valid ? m[2] : randomHex(16);
  const flags = valid ? m[4] : '01';
  return { traceId, traceparent: `00-${traceId}-${randomHex(8)}-${flags}` };
}
