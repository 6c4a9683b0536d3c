/** One JSON line per request through the inbound sidecar (pino). */
import { pino, type Logger } from 'pino';

export interface DecisionRecord {
  trace_id: string;
  request_id: string;
  caller: string | null;
  target: string;
  method: string;
  path: string;
  /** The policy's (`allow`, `deny`, `unauthenticated`), or the sidecar's when it refused before the filter (`unauthenticated`, `error`). */
  decision: string;
  rule: string | null;
  /** `enforce` or `dry-run`; null when the filter did not decide. */
  mode: string | null;
  /** What the caller received. */
  status: number;
  reason: string;
  latency_ms: number;
}

export function createLogger(destination?: NodeJS.WritableStream): Logger {
  const options = { base: null, timestamp: pino.stdTimeFunctions.isoTime };
  return destination ? pino(options, destination) : pino(options);
}

export function logDecision(logger: Logger, record: DecisionRecord): void {
  logger.info(record, 'decision');
}
