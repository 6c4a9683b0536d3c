/**
 * Remembers fingerprint `jti`s until they expire, in bounded memory.
 *
 * Entries are grouped in one-second buckets by expiry, so dropping everything expired costs
 * one bucket deletion per second of history, never a scan of live entries.
 *
 * At the bound: expired entries are swept first; if the cache is still full, the new
 * fingerprint is refused (`full`, answered 503) rather than evicting a live entry, because
 * evicting would let the evicted fingerprint be replayed. Only callers with a valid
 * signature get this far, and every entry lives at most TTL + skew seconds, so the cache
 * recovers by itself; size the capacity for (requests/s × (TTL + skew)).
 */
export const DEFAULT_REPLAY_CAPACITY = 250_000;

export type Admission = 'ok' | 'replayed' | 'full';

export class ReplayCache {
  #expiry = new Map<string, number>(); // jti → expiry (s)
  #buckets = new Map<number, string[]>(); // expiry second → jtis
  #swept = 0;

  constructor(readonly capacity = DEFAULT_REPLAY_CAPACITY) {}

  get size(): number {
    return this.#expiry.size;
  }

  /** Records `jti` as used until `expiresAt` (seconds). `now` in seconds. */
  admit(jti: string, expiresAt: number, now = Date.now() / 1000): Admission {
    if (now - this.#swept >= 1) this.sweep(now);
    const known = this.#expiry.get(jti);
    if (known !== undefined && known >= now) return 'replayed';
    if (known === undefined && this.#expiry.size >= this.capacity) {
      this.sweep(now);
      if (this.#expiry.size >= this.capacity) return 'full';
    }
    this.#expiry.set(jti, expiresAt);
    const second = Math.ceil(expiresAt);
    const bucket = this.#buckets.get(second);
    if (bucket) bucket.push(jti);
    else this.#buckets.set(second, [jti]);
    return 'ok';
  }

  /** Drops every entry whose expiry has passed. */
  sweep(now = Date.now() / 1000): void {
    this.#swept = now;
    for (const [second, jtis] of this.#buckets) {
      if (second >= now) continue;
      for (const jti of jtis) {
        // A jti re-admitted after expiring sits in a later bucket too: keep that entry.
        if ((this.#expiry.get(jti) ?? Infinity) < now) this.#expiry.delete(jti);
      }
      this.#buckets.delete(second);
    }
  }
}
