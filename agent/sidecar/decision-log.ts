/** One JSON line per request through the inbound sidecar (pino). */
import { pino, type Logger } from 'pino';
import { isoTime } from '../../platform/utc-time.ts';

export interface DecisionRecord {
  trace_id: string;
  request_id: string;
  caller: string | null;
  target: string;
  method: string;
  /** The request path with query values removed (pathForLog). */
  path: string;
  /** The policy's (`allow`, `deny`, `unauthenticated`), or the sidecar's when it refused before the filter (`unauthenticated`, `error`). */
  decision: string;
  rule: string | null;
  /** `enforce` or `dry-run`; null when the filter did not decide. */
  mode: string | null;
  /** What the caller received. */
  status: number;
  reason: string;
  /** The verified identity context's subject (`sub`) and OAuth client (`client_id`, else `azp`); null without one. */
  user: string | null;
  client_id: string | null;
  /** The leaf index of this decision's audit entry (`--audit-dir`); null when none was written. */
  audit_index: number | null;
  latency_ms: number;
}

/** pino's `stdTimeFunctions.isoTime`, without its Date#toISOString per line (platform/utc-time.ts says why). */
const timestamp = () => `,"time":"${isoTime(Date.now())}"`;

export function createLogger(destination?: NodeJS.WritableStream): Logger {
  const options = { base: null, timestamp };
  return destination ? pino(options, destination) : pino(options);
}

export function logDecision(logger: Logger, record: DecisionRecord): void {
  logger.info(record, 'decision');
}

/**
 * A request path as logs carry it: every query parameter keeps its name and `=`, never its
 * value, and a parameter without `=` (a bare value) is dropped, since credentials ride in
 * query values (`/cards?access_token=…&page=2` → `/cards?access_token=&page=`). The path
 * itself is kept as received.
 */
export function pathForLog(path: string): string {
  const q = path.indexOf('?');
  if (q < 0) return path;
  const names: string[] = [];
  for (const param of path.slice(q + 1).split('&')) {
    const eq = param.indexOf('=');
    if (eq >= 0) names.push(param.slice(0, eq + 1));
  }
  return `${path.slice(0, q)}?${names.join('&')}`;
}
