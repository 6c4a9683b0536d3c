/**
 * Audit status per agent instance: the latest checkpoint each agent pushed with its decision
 * batch, verified here as each arrives (incrementally: one checkpoint against the one before):
 * the chain to the trust bundle at the checkpoint's time, the signature, that the signer is
 * the sending agent's own SPIFFE ID, and that the log only grew (a smaller size, or another
 * root at the same size, is a rewritten log). The entries themselves are verified by
 * `palisade audit verify` on the log (docs/audit.md); the pane shows the signed heads.
 */
import type { X509Certificate } from 'node:crypto';
import { checkSignature, originIdentity, parseCheckpoint, type Checkpoint } from '../audit/checkpoint.ts';
import { loadBundle, spiffeIdOfCert, verifyChainAt } from '../audit/chain.ts';

export interface PushedCheckpoint {
  checkpoint: string;
  chain: string;
}

export interface AuditStatus {
  origin: string | null;
  /** Entries the latest verified checkpoint commits to. */
  size: number | null;
  root: string | null;
  signed_at: string | null;
  /** `verified`, or `failed` with the reason; the last good checkpoint stays shown. */
  result: 'verified' | 'failed' | 'none';
  reason: string | null;
  checked_at: string | null;
}

export interface AuditState {
  /** The last checkpoint that verified: the next one is checked against it. */
  good: Checkpoint | null;
  status: AuditStatus;
}

export const NO_AUDIT: AuditState = {
  good: null,
  status: { origin: null, size: null, root: null, signed_at: null, result: 'none', reason: null, checked_at: null },
};

export class CheckpointVerifier {
  readonly #bundle: X509Certificate[];

  constructor(bundlePem: string, private readonly now: () => number = Date.now) {
    this.#bundle = loadBundle(bundlePem);
  }

  /**
   * The state after `pushed` arrived from `service` (the sender's SPIFFE ID). A failure sticks:
   * a later good checkpoint does not clear a log that was once seen rewritten or forged.
   */
  check(previous: AuditState, service: string, pushed: PushedCheckpoint | null): AuditState {
    if (!pushed || previous.status.result === 'failed') return previous;
    const last = previous.good;
    try {
      const cp = parseCheckpoint(pushed.checkpoint);
      if (originIdentity(cp.origin) !== service) throw new Error(`checkpoint of ${originIdentity(cp.origin)} pushed by ${service}`);
      const leaf = verifyChainAt(pushed.chain, this.#bundle, new Date(cp.time));
      checkSignature(cp, leaf, spiffeIdOfCert(leaf));
      if (last && last.origin === cp.origin) {
        if (cp.size < last.size) throw new Error(`log shrank from ${last.size} to ${cp.size} entries`);
        if (cp.size === last.size && !cp.root.equals(last.root)) throw new Error(`another root for the same ${cp.size} entries: the log was rewritten`);
      }
      return { good: cp, status: this.#status(cp, null) };
    } catch (err) {
      return { good: last, status: this.#status(last, (err as Error).message.slice(0, 500)) };
    }
  }

  #status(good: Checkpoint | null, failure: string | null): AuditStatus {
    return {
      origin: good?.origin ?? null,
      size: good?.size ?? null,
      root: good ? good.root.toString('base64') : null,
      signed_at: good ? new Date(good.time).toISOString() : null,
      result: failure ? 'failed' : 'verified',
      reason: failure,
      checked_at: new Date(this.now()).toISOString(),
    };
  }
}
