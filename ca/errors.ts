/**
 * An error a CA client caused, answered as `{ "error": { "code", "message" } }` with a 4xx
 * status. `code` is part of the API: clients and docs depend on it, so never rename one.
 */
export class CaError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Sent as `retry-after` with a 429. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}
