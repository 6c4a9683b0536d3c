/** W3C Trace Context (`traceparent`): kept when valid, created when absent or malformed. */
import { randomUUID } from 'node:crypto';

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export interface TraceContext {
  traceId: string;
  /** The traceparent to send on: same trace, a new span id for this hop. */
  traceparent: string;
}

/** 32 random hex digits. randomUUID draws from a batched entropy pool: no syscall per request. */
function randomHex(): string {
  const u = randomUUID(); // 8-4-4-4-12
  return u.slice(0, 8) + u.slice(9, 13) + u.slice(14, 18) + u.slice(19, 23) + u.slice(24);
}

export function continueTrace(incoming: string | string[] | undefined): TraceContext {
  const m = typeof incoming === 'string' ? TRACEPARENT.exec(incoming.trim()) : null;
  const valid = m && m[1] !== 'ff' && !/^0+$/.test(m[2]) && !/^0+$/.test(m[3]);
  const traceId = valid ? m[2] : randomHex();
  const flags = valid ? m[4] : '01';
  return { traceId, traceparent: `00-${traceId}-${randomHex().slice(16)}-${flags}` };
}
