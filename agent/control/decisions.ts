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
import type { PeerCertificate } from 'node:tls';
import { Pool } from 'undici';
import type { SvidSource } from '../sidecar/svid.ts';
import type { DecisionRecord } from '../sidecar/decision-log.ts';
import { tlsMaterial } from '../sidecar/tls.ts';
import { serverIdentity, trustDomainOf } from '../sidecar/peer.ts';
import { AGENT_INSTANCE_HEADER, defaultControlId } from './protocol.ts';

export const DECISIONS_PATH = '/v1/agent/decisions';
export const BATCH_MAX = 500;
const QUEUE_MAX = 5_000;
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
}

export interface DecisionPusherOptions {
  url: string;
  identity: SvidSource & { health?(): { consecutiveFailures: number; lastError: string | null } };
  instance: string;
  controlId?: string;
  running(): { policy: string; version: number; sha256: string } | undefined;
  /** The audit log's latest checkpoint (AuditLog.latestCheckpoint), when the sidecar keeps one. */
  checkpoint?(): { text: string; chainPem: string } | null;
}

export class DecisionPusher {
  readonly #opts: DecisionPusherOptions;
  readonly #controlId: string;
  readonly #trustDomain: string;
  #pool: Pool | undefined;
  readonly #timer: NodeJS.Timeout;
  #queue: DecisionRecord[] = [];
  #dropped = 0;
  #flushing: Promise<void> | undefined;

  constructor(opts: DecisionPusherOptions) {
    this.#opts = opts;
    this.#trustDomain = trustDomainOf(opts.identity.svid().spiffeId);
    this.#controlId = opts.controlId ?? defaultControlId(this.#trustDomain);
    opts.identity.on('rotated', this.#rotated);
    this.#timer = setInterval(() => void this.flush(), FLUSH_MS).unref();
  }

  /** A decision of this agent's inbound sidecar. */
  add(record: DecisionRecord): void {
    if (this.#queue.length >= QUEUE_MAX) {
      this.#queue.shift();
      this.#dropped++;
    }
    this.#queue.push(record);
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
    await this.#pool?.destroy().catch(() => {});
  }

  /** After a rotation the next connection presents the new SVID. */
  readonly #rotated = () => {
    void this.#pool?.destroy().catch(() => {});
    this.#pool = undefined;
  };

  #connection(): Pool {
    return (this.#pool ??= new Pool(new URL(this.#opts.url).origin, {
      connections: 1,
      connect: {
        ...tlsMaterial(this.#opts.identity),
        servername: undefined,
        timeout: 5_000,
        checkServerIdentity: (_host: string, cert: PeerCertificate) => serverIdentity(cert, this.#controlId, this.#trustDomain),
      },
    }));
  }

  async #send(): Promise<void> {
    const decisions = this.#queue.slice(0, BATCH_MAX);
    const health = this.#opts.identity.health?.();
    const running = this.#opts.running();
    const batch: DecisionBatch = {
      renewal: { status: health && health.consecutiveFailures > 0 ? 'failed' : 'ok', consecutive_failures: health?.consecutiveFailures ?? 0, last_error: health?.lastError ?? null },
      policy: running ? { name: running.policy, version: running.version, sha256: running.sha256 } : null,
      dropped: this.#dropped,
      audit: ((cp) => (cp ? { checkpoint: cp.text, chain: cp.chainPem } : null))(this.#opts.checkpoint?.() ?? null),
      decisions,
    };
    try {
      const response = await this.#connection().request({
        path: DECISIONS_PATH, method: 'POST', body: JSON.stringify(batch),
        headers: { 'content-type': 'application/json', [AGENT_INSTANCE_HEADER]: this.#opts.instance },
      });
      await response.body.dump();
      if (response.statusCode === 204) this.#queue.splice(0, decisions.length);
    } catch {
      // The control plane is away: the queue waits, bounded.
    }
  }
}
