/**
 * The durable state the CA and the control plane share one interface for: SQLite (embedded,
 * the default: nothing to install) or PostgreSQL (`postgres://…`, for replicas that must agree).
 *
 * SQL is written once, in the subset both engines run, with `$1, $2, …` placeholders (the
 * SQLite backend rewrites them). Integers are JavaScript numbers (milliseconds fit).
 * Anything engine-specific (upserts, `FOR UPDATE`) goes through `kind`, in the caller's
 * one place for it, never scattered.
 */
export type StoreKind = 'sqlite' | 'postgres';

export type Row = Record<string, unknown>;

export interface Queryable {
  /** Rows of a SELECT (or of a statement with RETURNING). */
  query<T extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /** A statement without rows; how many rows it changed. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
  /**
   * Tells every `listen(channel)` on the same database (PostgreSQL NOTIFY; for SQLite, the
   * same process). Inside a transaction it is delivered only if and when that commits.
   */
  notify(channel: string, payload: string): Promise<void>;
}

export interface Store extends Queryable {
  readonly kind: StoreKind;
  /**
   * Runs `fn` in one serializable transaction: commits when it resolves, rolls back when it
   * throws. A serialization conflict between replicas is retried here, so `fn` must not
   * have effects outside the transaction. `fn` works through `tx` only: the store itself
   * waits for the transaction to end (on SQLite, so calling it from `fn` never returns).
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Applies `migrations` of `component` not yet applied, in order, each in its own
   * transaction, recording them in the store; replicas starting at once apply each once.
   * Never edit an entry: append one.
   */
  migrate(component: string, migrations: readonly string[]): Promise<void>;
  /**
   * Calls `onMessage` for every committed `notify(channel, …)`; resolves (to the unsubscribe)
   * once listening, so a notify after that is delivered. Delivery is at most once: when the
   * PostgreSQL connection carrying it was lost and is back, `onReconnect` runs, and the caller
   * re-reads what it follows, since messages in between are gone. Channels: 1-63 of a-z, 0-9,
   * `_`, `.`; payloads under 8000 bytes (PostgreSQL's limits, on both engines).
   */
  listen(channel: string, onMessage: (payload: string) => void, onReconnect?: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}
