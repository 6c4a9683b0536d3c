import pg from 'pg';
import { checkNotification, MIGRATIONS_TABLE, newerSchemaError } from './rules.ts';
import type { Queryable, Row, Store } from './store.ts';

/** Serialization failure and deadlock: the transaction lost to a concurrent one and may simply run again. */
const RETRIABLE = new Set(['40001', '40P01']);
const MAX_ATTEMPTS = 30;
/** One advisory lock for every component's migrations: replicas starting at once apply each once. */
const MIGRATION_LOCK = 0x70616c69; // "pali"
const RECONNECT_MAX_MS = 2_000;

/**
 * How long a replica waits on PostgreSQL before it fails the request at hand (a 500 to its
 * caller, which retries elsewhere) rather than hanging with it: a server that stopped
 * answering (a frozen VM, a half-open connection after a failover) would otherwise hold
 * every request, and a pool that is never given back, forever.
 * - connectMs: opening a connection, and waiting for one from the pool.
 * - queryMs: an answer to a statement sent (client side; the connection is then discarded).
 * - statementMs: PostgreSQL cancels a statement running longer (server side: locks freed).
 * - idleInTransactionMs: PostgreSQL ends a session left inside a transaction this long.
 * The server-side two, and query_timeout, can be set per deployment in the URL
 * (`?statement_timeout=30000`), which wins over these defaults.
 */
export interface PostgresTimeouts {
  connectMs: number;
  queryMs: number;
  statementMs: number;
  idleInTransactionMs: number;
}
export const DEFAULT_POSTGRES_TIMEOUTS: PostgresTimeouts = { connectMs: 5_000, queryMs: 15_000, statementMs: 10_000, idleInTransactionMs: 30_000 };
/** TCP keepalive on every connection, so a peer that vanished is noticed on idle ones too. */
const KEEPALIVE = { keepAlive: true, keepAliveInitialDelayMillis: 10_000 };

/** BIGINT (COUNT(*), millisecond columns) as a number, as SQLite returns it; never silently rounded. */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid !== pg.types.builtins.INT8) return pg.types.getTypeParser(oid, format);
    return (text: string) => {
      const n = Number(text);
      if (!Number.isSafeInteger(n)) throw new RangeError(`integer ${text} does not fit a JavaScript number`);
      return n;
    };
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * PostgreSQL behind the Store interface: a connection pool for statements and serializable
 * transactions, and one dedicated connection for LISTEN that reconnects by itself.
 */
export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  private readonly pool: pg.Pool;
  /** Per channel: its subscriptions, and the LISTEN that serves them. */
  private readonly listeners = new Map<string, { handlers: Set<Subscription>; ready: Promise<unknown> }>();
  private listener?: Promise<pg.Client>;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly timeouts: PostgresTimeouts = DEFAULT_POSTGRES_TIMEOUTS,
  ) {
    this.pool = new pg.Pool({
      ...this.connection(),
      query_timeout: timeouts.queryMs,
      statement_timeout: timeouts.statementMs,
      idle_in_transaction_session_timeout: timeouts.idleInTransactionMs,
    });
    // An idle connection the server dropped is discarded by the pool; the next query opens a new one.
    this.pool.on('error', () => {});
  }

  async query<T extends Row = Row>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    return (await this.pool.query<T>(sql, params as unknown[])).rows;
  }

  async run(sql: string, params: readonly unknown[] = []): Promise<number> {
    return (await this.pool.query(sql, params as unknown[])).rowCount ?? 0;
  }

  async notify(channel: string, payload: string): Promise<void> {
    await notifyOn(this.pool, channel, payload);
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.withClient(async (client) => {
          await client.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
          const tx = transactionOn(client);
          try {
            const result = await fn(tx);
            await client.query('COMMIT');
            return result;
          } finally {
            tx.end(); // the connection goes back to the pool: a tx kept past its end must not reach it
          }
        });
      } catch (err) {
        if (!RETRIABLE.has((err as { code?: string }).code ?? '') || attempt >= MAX_ATTEMPTS) throw err;
        await sleep(Math.random() * Math.min(100, 2 ** attempt)); // jitter, so the losers do not collide again
      }
    }
  }

  /**
   * On a connection of its own: the advisory lock is a session lock, held across the
   * per-migration transactions and released with the session however this ends. No
   * statement timeout of ours here (one the URL sets still applies): the lock waits out
   * another replica's migrations, and a migration of a big table may rightly take long.
   */
  async migrate(component: string, migrations: readonly string[]): Promise<void> {
    const client = new pg.Client(this.connection());
    client.on('error', () => {}); // surfaces as the failing query's error
    await client.connect();
    try {
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      await client.query(`CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
        component TEXT NOT NULL, version INTEGER NOT NULL, applied_at BIGINT NOT NULL, PRIMARY KEY (component, version))`);
      const { rows } = await client.query<{ v: number | null }>(`SELECT MAX(version) AS v FROM ${MIGRATIONS_TABLE} WHERE component = $1`, [component]);
      const applied = rows[0]?.v ?? 0;
      if (applied > migrations.length) throw newerSchemaError(component, applied, migrations.length);
      for (let version = applied + 1; version <= migrations.length; version++) {
        await client.query('BEGIN');
        await client.query(migrations[version - 1]!);
        await client.query(`INSERT INTO ${MIGRATIONS_TABLE} (component, version, applied_at) VALUES ($1, $2, $3)`, [component, version, Date.now()]);
        await client.query('COMMIT');
      }
    } finally {
      await client.end().catch(() => {}); // a failed migration rolls back with the session
    }
  }

  async listen(channel: string, onMessage: (payload: string) => void, onReconnect?: () => void): Promise<() => Promise<void>> {
    checkNotification(channel, '');
    const client = await this.listenConnection();
    let entry = this.listeners.get(channel);
    if (!entry) {
      // Concurrent listen()s of one channel share its LISTEN: none resolves before it is in place.
      entry = { handlers: new Set(), ready: client.query(`LISTEN ${client.escapeIdentifier(channel)}`) };
      this.listeners.set(channel, entry);
    }
    const subscription = { onMessage, onReconnect };
    entry.handlers.add(subscription);
    const unlisten = async () => {
      if (!entry.handlers.delete(subscription) || entry.handlers.size > 0) return;
      this.listeners.delete(channel);
      const current = await this.listener?.catch(() => undefined);
      await current?.query(`UNLISTEN ${current.escapeIdentifier(channel)}`).catch(() => {}); // a lost connection listens to nothing anyway
    };
    try {
      await entry.ready;
    } catch (err) {
      await unlisten();
      throw err;
    }
    return unlisten;
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = await this.listener?.catch(() => undefined);
    await client?.end().catch(() => {});
    await this.pool.end();
  }

  /** The LISTEN connection, opened on first use; when it is lost, a new one re-listens every channel. */
  private listenConnection(): Promise<pg.Client> {
    if (!this.listener) {
      this.listener = this.connectListener();
      this.listener.catch(() => (this.listener = undefined)); // the next listen() tries again
    }
    return this.listener;
  }

  private async connectListener(): Promise<pg.Client> {
    const client = new pg.Client(this.connection());
    let lost = false;
    const onLost = () => {
      if (lost) return;
      lost = true;
      client.end().catch(() => {});
      if (this.closed) return;
      this.listener = this.reconnectListener();
      this.listener.catch(() => {}); // only ever rejects once the store is closed
    };
    client.on('error', onLost);
    client.on('end', onLost);
    client.on('notification', ({ channel, payload }) => {
      for (const { onMessage } of this.listeners.get(channel)?.handlers ?? []) onMessage(payload ?? '');
    });
    try {
      await client.connect();
      for (const channel of this.listeners.keys()) await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
    } catch (err) {
      lost = true;
      client.end().catch(() => {});
      throw err;
    }
    return client;
  }

  /** Retries until it has a connection again (or the store closes), then says messages may have been missed. */
  private async reconnectListener(): Promise<pg.Client> {
    for (let failures = 0; ; failures++) {
      await sleep(Math.min(RECONNECT_MAX_MS, 50 * 2 ** failures));
      if (this.closed) throw new Error('store is closed');
      const client = await this.connectListener().catch(() => undefined);
      if (!client) continue;
      for (const { handlers } of this.listeners.values()) for (const { onReconnect } of handlers) onReconnect?.();
      return client;
    }
  }

  /** What every connection of this store shares: where, how results are typed, how long connecting may take. */
  private connection(): pg.ClientConfig {
    return { connectionString: this.url, types: TYPES, connectionTimeoutMillis: this.timeouts.connectMs, ...KEEPALIVE };
  }

  private async withClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      const result = await fn(client);
      client.release();
      return result;
    } catch (err) {
      // The session may be mid-transaction or dead: it goes back to the pool only if it answers ROLLBACK.
      const usable = await client.query('ROLLBACK').then(() => true, () => false);
      client.release(!usable);
      throw err;
    }
  }
}

function transactionOn(client: pg.PoolClient): Queryable & { end(): void } {
  let session: pg.PoolClient | undefined = client;
  const inside = () => session ?? Promise.reject(new Error('transaction is over: use the store'));
  return {
    query: async <T extends Row>(sql: string, params: readonly unknown[] = []) => (await (await inside()).query<T>(sql, params as unknown[])).rows,
    run: async (sql, params = []) => (await (await inside()).query(sql, params as unknown[])).rowCount ?? 0,
    notify: async (channel, payload) => notifyOn(await inside(), channel, payload),
    end: () => (session = undefined),
  };
}

/** NOTIFY through pg_notify (NOTIFY itself takes no parameters); in a transaction PostgreSQL delivers it at commit. */
async function notifyOn(db: pg.Pool | pg.PoolClient, channel: string, payload: string): Promise<void> {
  checkNotification(channel, payload);
  await db.query('SELECT pg_notify($1, $2)', [channel, payload]);
}

interface Subscription {
  onMessage: (payload: string) => void;
  onReconnect?: () => void;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
