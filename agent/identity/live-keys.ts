/**
 * The agent's copy of the CA's live-key set (`GET /v1/jwks`: the keys of every unexpired,
 * unrevoked, not superseded SVID), refreshed on Envoy's period (jwt_authn re-fetches the
 * same JWKS every 5 s), so a revocation reaches the embedded sidecar within Envoy's bound.
 */
export type KeyStanding = 'live' | 'unknown' | 'stale';

export interface LiveKeysOptions {
  /** How often the set is fetched (default 5 s, as Envoy's `cache_duration`). */
  refreshMs?: number;
  /** Older than this (no successful fetch since), the set answers `stale` for every key (default 60 s). */
  maxStaleMs?: number;
  /** Called when a refresh fails; the previous set stays in use until it is stale. */
  log?: (message: string) => void;
  /** The clock staleness is measured by (ms since the epoch; default Date.now). */
  now?: () => number;
}

export const DEFAULT_LIVE_KEYS_REFRESH_MS = 5_000;
export const DEFAULT_LIVE_KEYS_MAX_STALE_MS = 60_000;
/** Keys missing from the set trigger a re-fetch at most this often. */
const MISS_REFETCH_MS = 1_000;

export class LiveKeys {
  private kids = new Set<string>();
  private fetchedAt = 0;
  private lastAttempt = 0;
  private inFlight: Promise<void> | undefined;
  private missed: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly maxStaleMs: number;
  private readonly now: () => number;

  /** Fetches the set once (a failure here is the caller's startup failure), then keeps it fresh. */
  static async start(fetch: () => Promise<string[]>, options: LiveKeysOptions = {}): Promise<LiveKeys> {
    const keys = new LiveKeys(fetch, options);
    try {
      await keys.fetchNow();
    } catch (err) {
      keys.close();
      throw err;
    }
    return keys;
  }

  private constructor(
    private readonly fetch: () => Promise<string[]>,
    private readonly options: LiveKeysOptions,
  ) {
    this.maxStaleMs = options.maxStaleMs ?? DEFAULT_LIVE_KEYS_MAX_STALE_MS;
    this.now = options.now ?? Date.now;
    this.timer = setInterval(() => void this.refresh(), options.refreshMs ?? DEFAULT_LIVE_KEYS_REFRESH_MS);
    this.timer.unref();
  }

  /**
   * live: the key is in the CA's set; unknown: it is not (revoked, expired, superseded past
   * its grace, or never issued), even after a re-fetch; stale: the set could not be
   * refreshed for longer than the staleness bound, so no key is vouched for.
   */
  async standing(kid: string): Promise<KeyStanding> {
    if (this.isStale()) return 'stale';
    if (this.kids.has(kid)) return 'live';
    await this.refetchAfterMiss();
    if (this.isStale()) return 'stale';
    return this.kids.has(kid) ? 'live' : 'unknown';
  }

  /** Fetches now (one fetch at a time); failures are logged, never thrown. */
  refresh(): Promise<void> {
    return this.fetchNow().catch((err: Error) => this.options.log?.(`live keys refresh failed: ${err.message}`));
  }

  close(): void {
    clearInterval(this.timer);
  }

  /**
   * A key the set lacks may belong to a peer that renewed after the last fetch: fetch again,
   * but at most once per MISS_REFETCH_MS however many callers miss (a revoked peer cannot
   * make the agent hammer the CA), and let the callers wait for that fetch.
   */
  private refetchAfterMiss(): Promise<void> {
    this.missed ??= new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, this.lastAttempt + MISS_REFETCH_MS - Date.now()))).then(() => {
      this.missed = undefined;
      return this.refresh();
    });
    return this.missed;
  }

  private isStale(): boolean {
    return this.now() - this.fetchedAt > this.maxStaleMs;
  }

  private fetchNow(): Promise<void> {
    this.inFlight ??= (async () => {
      this.lastAttempt = Date.now(); // paces re-fetches in real time, as the timers run
      const started = this.now();
      try {
        const kids = await this.fetch();
        this.kids = new Set(kids);
        this.fetchedAt = started; // the CA's state is as old as the request, not the answer
      } finally {
        this.inFlight = undefined;
      }
    })();
    return this.inFlight;
  }
}
