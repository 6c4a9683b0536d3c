/**
 * envoy.service.accesslog.v3.AccessLogService on the agent's socket: Envoy's http_grpc access
 * logger (`palisade envoy bootstrap --audit`) streams every inbound request's entry here and
 * each becomes an audit entry (als-entry.ts), appended to the same log the sidecar writes.
 *
 * Only what the socket lets in can stream (it is 0600: Envoy running as the agent's user),
 * and only under the log name the bootstrap gives. Nothing is written that `palisade audit
 * verify` would refuse: an entry that is malformed, or whose fingerprint does not verify
 * against the caller's certificate and the trust bundle exactly as verify checks it, is not
 * written, counted (`palisade_audit_envoy_entries_total{result="rejected"}`) and logged;
 * the stream goes on. Envoy has forwarded the request already: a write that fails is
 * counted `lost`.
 */
import { status as GrpcStatus, type sendUnaryData, type ServerReadableStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Counter, type Registry } from '../metrics.ts';
import type { AuditLog } from '../../audit/log.ts';
import { loadBundle } from '../../audit/chain.ts';
import { EvidenceError, FingerprintEvidence, threadpoolCheck } from '../../audit/evidence.ts';
import { grpcService } from '../../envoy/protos.ts';
import { AUDIT_LOG_NAME } from '../../envoy/access-log.ts';
import { AccessLogEntryError, entryOf, type EnvoyDecision } from './als-entry.ts';
import type { XdsService } from './server.ts';

export const ALS_PROTO = 'envoy/service/accesslog/v3/als.proto';

export interface AccessLogAuditOptions {
  log: AuditLog;
  /** The agent: the service's SPIFFE ID and the trust bundle callers' certificates chain to. */
  identity: { svid(): { spiffeId: string }; trustBundle(): string[] };
  /** SHA-256 of the policy filter Envoy runs (from the ECDS manifest), when the agent knows it. */
  policySha256?: () => string | undefined;
  logger: Logger;
  registry?: Registry;
}

type Message = { identifier?: { log_name?: string }; http_logs?: { log_entry?: Record<string, unknown>[] }; tcp_logs?: unknown };

export function createAccessLogService(opts: AccessLogAuditOptions): XdsService {
  const entries = new Counter({
    name: 'palisade_audit_envoy_entries_total',
    help: "Envoy access-log entries by result: written, rejected (malformed or evidence that does not verify: not written), lost (not written, request already forwarded)",
    labelNames: ['result'],
    registers: opts.registry ? [opts.registry] : [],
  });
  /** Appends in arrival order; checks of one message run at once. */
  let queue: Promise<void> = Promise.resolve();

  const reject = (reason: string, entry: Record<string, any> | undefined) => {
    entries.inc({ result: 'rejected' });
    opts.logger.error({ reason, request_id: entry?.request?.request_id ?? null }, 'Envoy access-log entry rejected: not written to the audit log');
  };

  /** The entry if it may be written: well-formed, and its fingerprint (if any) verifies as `verify` will check it. */
  const prepare = async (raw: Record<string, any>, evidence: FingerprintEvidence, pems: Map<string, string>): Promise<EnvoyDecision | null> => {
    try {
      const envoy = entryOf(raw, opts.identity.svid().spiffeId, opts.policySha256?.());
      if (envoy.cert && envoy.decided.caller) pems.set(envoy.decided.caller.cert, envoy.cert.toString());
      const signature = evidence.check(envoy.decided);
      if (signature && !(await signature)) throw new EvidenceError("fingerprint signature does not verify with the caller's certificate");
      return envoy;
    } catch (err) {
      if (!(err instanceof AccessLogEntryError || err instanceof EvidenceError)) throw err;
      reject(err.message, raw);
      return null;
    }
  };

  const append = ({ decided, cert }: EnvoyDecision) => {
    opts.log.append(decided, cert ? { id: decided.caller!.cert, der: cert.raw } : undefined).then(
      () => entries.inc({ result: 'written' }),
      (err: Error) => {
        entries.inc({ result: 'lost' });
        opts.logger.error({ err: err.message, request_id: decided.request_id }, 'audit entry lost; Envoy forwarded the request');
      },
    );
  };

  const receive = (message: Message) => {
    const batch = message.http_logs?.log_entry ?? [];
    if (batch.length === 0) return;
    // Certificates come with their entries; the bundle is the agent's current one.
    const pems = new Map<string, string>();
    const evidence = new FingerprintEvidence((id) => pems.get(id), loadBundle(opts.identity.trustBundle().join('')), threadpoolCheck);
    const prepared = batch.map((raw) => prepare(raw as Record<string, any>, evidence, pems));
    queue = queue.then(async () => {
      for (const p of prepared) {
        const envoy = await p.catch((err: Error) => (reject(`cannot be processed: ${err.message}`, undefined), null));
        if (envoy) append(envoy);
      }
    });
  };

  const StreamAccessLogs = (call: ServerReadableStream<Message, object>, callback: sendUnaryData<object>) => {
    let named = false;
    let done = false;
    const finish = (err: { code: number; details: string } | null) => {
      if (done) return;
      done = true;
      if (err) {
        opts.logger.warn({ reason: err.details }, 'Envoy access-log stream refused');
        call.removeAllListeners('data');
        callback(err);
      } else callback(null, {});
    };
    call.on('data', (message: Message) => {
      if (!named) {
        const name = message.identifier?.log_name;
        if (name !== AUDIT_LOG_NAME) return finish({ code: GrpcStatus.INVALID_ARGUMENT, details: `this socket takes the access log ${AUDIT_LOG_NAME}, not ${name ?? '(no identifier)'}` });
        named = true;
      }
      if (message.tcp_logs) return reject('a TCP access-log entry: only HTTP entries are decisions', undefined);
      receive(message);
    });
    call.on('end', () => finish(null));
    call.on('error', () => finish(null));
  };

  return {
    definition: grpcService(ALS_PROTO, 'envoy.service.accesslog.v3.AccessLogService').service,
    implementation: { StreamAccessLogs },
  };
}
