/**
 * Counts failed join attempts per client address in a fixed window and refuses further
 * attempts once the limit is reached. Only failures count, so a fleet of agents joining
 * from one NAT address is never slowed down by its own successes; @fastify/rate-limit
 * counts every request, which is the wrong signal for guessing join tokens.
 */
export class FailureLimiter {
  private readonly windows = new Map<string, { start: number; failures: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds until `key` may try again, or 0 when it may try now. */
  retryAfter(key: string): number {
    const entry = this.current(key);
    return entry && entry.failures >= this.limit ? entry.start + this.windowMs - this.now() : 0;
  }

  fail(key: string): void {
    const entry = this.current(key);
    if (entry) entry.failures++;
    else this.windows.set(key, { start: this.now(), failures: 1 });
    if (this.windows.size > 100_000) this.sweep(); // bounded memory under a spray of addresses
  }

  private current(key: string) {
    const entry = this.windows.get(key);
    if (entry && this.now() - entry.start >= this.windowMs) {
      this.windows.delete(key);
      return undefined;
    }
    return entry;
  }

  private sweep(): void {
    for (const key of [...this.windows.keys()]) this.current(key);
  }
}
