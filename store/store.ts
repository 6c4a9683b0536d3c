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
   * have effects outside the transaction.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Applies `migrations` of `component` not yet applied, in order, each in its own
   * transaction, recording them in the store; replicas starting at once apply each once.
   * Never edit an entry: append one.
   */
  migrate(component: string, migrations: readonly string[]): Promise<void>;
  /** Calls `onMessage` for every committed `notify(channel, …)`; resolves to the unsubscribe. */
  listen(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}
