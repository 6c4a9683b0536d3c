/**
 * The agent's decisions, summarized for the control plane's Security Pane (docs/dashboard.md).
 *
 * Why the agent pushes rather than the control plane pulling: the agent already holds an
 * mTLS client identity the control plane checks, it knows which policy version decided each
 * request, and a push needs no listener on the agent reachable from the control plane. The
 * audit log stays the record; these summaries are only the live view.
 *
 * `POST /v1/agent/decisions` with the SVID as client certificate, body DecisionBatch. The
 * control plane keeps only the decisions whose target is the sending agent's own SPIFFE ID
 * and takes the SVID's serial and validity from the certificate presented, not the body.
 * Batches go out every FLUSH_MS (also empty: a heartbeat), at most BATCH_MAX decisions each;
 * at most QUEUE_MAX wait, the oldest are dropped (and counted) while the control plane is away.
 */
import { Pool } from '../undici.ts';
import type { SvidSource } from '../sidecar/svid.ts';
import type { DecisionRecord } from '../sidecar/decision-log.ts';
import { controlConnect, controlIdOf } from './connect.ts';
import { AGENT_INSTANCE_HEADER } from './protocol.ts';
import type { ControlSubscriber } from './subscriber.ts';
import type { AuditLog } from '../../audit/log.ts';
import { parseCheckpoint } from '../../audit/checkpoint.ts';

export const DECISIONS_PATH = '/v1/agent/decisions';
export const BATCH_MAX = 500;
const QUEUE_MAX = 5_000;
/** Entry lines per batch, so a batch stays well under the control plane's 1 MiB body limit; the rest go next time. */
const PROOF_BYTES = 256 * 1024;
const FLUSH_MS = 1_000;

export interface DecisionBatch {
  /** The identity agent's renewal state: `ok`, or `failed` with the last error. */
  renewal: { status: 'ok' | 'failed'; consecutive_failures: number; last_error: string | null };
  /** The policy version the sidecar runs (from the control plane), null before the first. */
  policy: { name: string; version: number; sha256: string } | null;
  /** Decisions dropped on this agent because the queue was full. */
  dropped: number;
  /** The agent's audit log's latest signed checkpoint and the chain that signed it, null without one. */
  audit: { checkpoint: string; chain: string } | null;
  decisions: DecisionRecord[];
  /**
   * Inclusion proofs, against `audit`'s checkpoint, of the audit entries of decisions pushed
   * in earlier batches (by their `audit_index`) that it covers: the entry line as stored
   * and its RFC 9162 audit path (base64). At most BATCH_MAX, and 256 KiB of entry lines.
   */
  proofs: EntryProof[];
}

export interface EntryProof {
  index: number;
  entry: string;
  proof: string[];
}

export interface DecisionPusherOptions {
  /** The control plane replica to push to now (the one the agent streams from); undefined: keep the queue. */
  url(): string | undefined;
  identity: SvidSource & { health?(): { consecutiveFailures: number; lastError: string | null } };
  instance: string;
  controlId?: string;
  running(): { policy: string; version: number; sha256: string } | undefined;
  /** The sidecar's audit log, when it keeps one: its checkpoints and inclusion proofs go along. */
  audit?: AuditLog;
}

export class DecisionPusher {
  readonly #opts: DecisionPusherOptions;
  readonly #controlId: string;
  #pool: { origin: string; pool: Pool } | undefined;
  readonly #timer: NodeJS.Timeout;
  #queue: { record: DecisionRecord; entry?: string }[] = [];
  /** Audit entries of pushed decisions whose inclusion has not been proven yet (oldest first, bounded as the queue). */
  #unproven: { index: number; entry: string }[] = [];
  #dropped = 0;
  #flushing: Promise<void> | undefined;

  constructor(opts: DecisionPusherOptions) {
    this.#opts = opts;
    this.#controlId = controlIdOf(opts.identity, opts.controlId);
    opts.identity.on('rotated', this.#rotated);
    this.#timer = setInterval(() => void this.flush(), FLUSH_MS).unref();
  }

  /** A decision of this agent's inbound sidecar, with its audit entry's line when one was written. */
  add(record: DecisionRecord, auditEntry?: string): void {
    if (this.#queue.length >= QUEUE_MAX) {
      this.#queue.shift();
      this.#dropped++;
    }
    this.#queue.push({ record, entry: this.#opts.audit ? auditEntry : undefined });
  }

  /** Sends what is queued (one batch at a time); failures keep it queued for the next flush. */
  flush(): Promise<void> {
    this.#flushing ??= this.#send().finally(() => (this.#flushing = undefined));
    return this.#flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#opts.identity.off('rotated', this.#rotated);
    await this.#flushing;
    await this.#pool?.pool.destroy().catch(() => {});
  }

  /** After a rotation the next connection presents the new SVID. */
  readonly #rotated = () => {
    void this.#pool?.pool.destroy().catch(() => {});
    this.#pool = undefined;
  };

  /** One connection to `url`'s replica; a switch of replica (the stream moved) closes the old one. */
  #connection(url: string): Pool {
    const origin = new URL(url).origin;
    if (this.#pool?.origin === origin) return this.#pool.pool;
    this.#rotated();
    const pool = new Pool(origin, {
      connections: 1,
      connect: controlConnect(this.#opts.identity, this.#controlId),
    });
    this.#pool = { origin, pool };
    return pool;
  }

  /** Audit paths to the checkpoint of `size` entries for the unproven entries it covers. */
  #proofs(log: AuditLog, size: number): EntryProof[] {
    const proofs: EntryProof[] = [];
    let bytes = 0;
    for (const u of this.#unproven) {
      if (u.index >= size) continue;
      if (proofs.length >= BATCH_MAX || (bytes += u.entry.length) > PROOF_BYTES) break;
      proofs.push({ index: u.index, entry: u.entry, proof: log.tree.inclusionProof(u.index, size).map((h) => h.toString('base64')) });
    }
    return proofs;
  }

  async #send(): Promise<void> {
    const url = this.#opts.url();
    if (!url) return;
    const sending = this.#queue.slice(0, BATCH_MAX);
    const health = this.#opts.identity.health?.();
    const running = this.#opts.running();
    const checkpoint = this.#opts.audit?.latestCheckpoint() ?? null;
    const proofs = checkpoint ? this.#proofs(this.#opts.audit!, parseCheckpoint(checkpoint.text).size) : [];
    const batch: DecisionBatch = {
      renewal: { status: health && health.consecutiveFailures > 0 ? 'failed' : 'ok', consecutive_failures: health?.consecutiveFailures ?? 0, last_error: health?.lastError ?? null },
      policy: running ? { name: running.policy, version: running.version, sha256: running.sha256 } : null,
      dropped: this.#dropped,
      audit: checkpoint && { checkpoint: checkpoint.text, chain: checkpoint.chainPem },
      decisions: sending.map((q) => q.record),
      proofs,
    };
    try {
      const response = await this.#connection(url).request({
        path: DECISIONS_PATH, method: 'POST', body: JSON.stringify(batch),
        headers: { 'content-type': 'application/json', [AGENT_INSTANCE_HEADER]: this.#opts.instance },
      });
      await response.body.dump();
      if (response.statusCode === 204) {
        this.#queue.splice(0, sending.length);
        const proven = new Set(proofs.map((p) => p.index));
        this.#unproven = this.#unproven.filter((u) => !proven.has(u.index));
        // Proven from the next batch on: the control plane holds these decisions now.
        for (const { record, entry } of sending) {
          if (record.audit_index === null || entry === undefined) continue;
          if (this.#unproven.length >= QUEUE_MAX) this.#unproven.shift();
          this.#unproven.push({ index: record.audit_index, entry });
        }
      }
    } catch {
      // The control plane is away: the queue waits, bounded.
    }
  }
}

/**
 * The pusher of an agent that streams from the control plane (`palisade agent --control`, and
 * each of the demo's agents): it pushes to the replica the stream is connected to, names the
 * instance and policy version as the rollout reports do, and carries `log`'s checkpoints.
 */
export function subscriberPusher(identity: DecisionPusherOptions['identity'], subscriber: ControlSubscriber, log?: AuditLog): DecisionPusher {
  return new DecisionPusher({
    url: () => subscriber.connectedTo, identity, instance: subscriber.instance, controlId: subscriber.controlId,
    running: () => subscriber.running, audit: log,
  });
}
