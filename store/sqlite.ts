import path from 'node:path';
import Database from 'better-sqlite3';
import { checkNotification, MIGRATIONS_TABLE, newerSchemaError } from './rules.ts';
import type { Queryable, Row, Store } from './store.ts';

/**
 * SQLite behind the Store interface. better-sqlite3 is synchronous and one connection has
 * one transaction, so every operation of every store on the same file in this process goes
 * through one queue: an open transaction (awaiting between statements) never sees another
 * caller's statements, and two stores on one file never block each other synchronously on
 * the write lock. Other processes wait on SQLite's own lock (busy timeout); BEGIN IMMEDIATE
 * takes it up front, so transactions never conflict and there is nothing to retry.
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly shared: FileState;
  private readonly key: string | symbol;
  /** This store's listeners (in `shared`), removed when it closes. */
  private readonly own = new Set<Listener>();
  private readonly statements = new Map<string, Database.Statement>();

  constructor(file: string) {
    this.db = new Database(file, { timeout: 5000 });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL'); // durable across process crashes in WAL mode
    this.db.pragma('foreign_keys = ON');
    this.key = file === ':memory:' ? Symbol(file) : path.resolve(file);
    this.shared = files.get(this.key) ?? { tail: Promise.resolve(), listeners: new Set(), stores: 0 };
    files.set(this.key, this.shared);
    this.shared.stores++;
  }

  query<T extends Row = Row>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    return this.exclusive(async () => this.statement(sql).all(bind(params)) as T[]);
  }

  run(sql: string, params: readonly unknown[] = []): Promise<number> {
    return this.exclusive(async () => this.statement(sql).run(bind(params)).changes);
  }

  async notify(channel: string, payload: string): Promise<void> {
    checkNotification(channel, payload);
    return this.exclusive(async () => this.deliver([[channel, payload]]));
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      const pending: [string, string][] = [];
      let open = true;
      const inside = () => {
        if (!open) throw new Error('transaction is over: use the store');
      };
      const tx: Queryable = {
        query: async <R extends Row>(sql: string, params: readonly unknown[] = []) => (inside(), this.statement(sql).all(bind(params)) as R[]),
        run: async (sql, params = []) => (inside(), this.statement(sql).run(bind(params)).changes),
        notify: async (channel, payload) => {
          inside();
          checkNotification(channel, payload);
          pending.push([channel, payload]);
        },
      };
      this.db.exec('BEGIN IMMEDIATE');
      let result: T;
      try {
        result = await fn(tx);
        this.db.exec('COMMIT');
      } catch (err) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw err;
      } finally {
        open = false; // a tx kept past its end must not run outside the transaction (or inside another)
      }
      this.deliver(pending);
      return result;
    });
  }

  async migrate(component: string, migrations: readonly string[]): Promise<void> {
    await this.run(`CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
      component TEXT NOT NULL, version INTEGER NOT NULL, applied_at BIGINT NOT NULL, PRIMARY KEY (component, version))`);
    for (let version = 1; version <= migrations.length; version++) {
      // The write lock taken by BEGIN IMMEDIATE serializes processes migrating at once.
      await this.transaction(async () => {
        const applied = this.appliedVersion(component);
        if (applied > migrations.length) throw newerSchemaError(component, applied, migrations.length);
        if (applied >= version) return;
        this.db.exec(migrations[version - 1]!);
        this.statement(`INSERT INTO ${MIGRATIONS_TABLE} (component, version, applied_at) VALUES ($1, $2, $3)`).run(bind([component, version, Date.now()]));
      });
    }
  }

  async listen(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>> {
    checkNotification(channel, '');
    const listener = { channel, onMessage };
    this.shared.listeners.add(listener);
    this.own.add(listener);
    return async () => {
      this.shared.listeners.delete(listener);
      this.own.delete(listener);
    };
  }

  async close(): Promise<void> {
    await this.exclusive(async () => this.db.close());
    for (const listener of this.own) this.shared.listeners.delete(listener);
    if (--this.shared.stores === 0) files.delete(this.key);
  }

  private appliedVersion(component: string): number {
    const row = this.statement(`SELECT MAX(version) AS v FROM ${MIGRATIONS_TABLE} WHERE component = $1`).get(bind([component])) as { v: number | null };
    return row.v ?? 0;
  }

  /** Listeners run after the current turn, as a PostgreSQL notification would arrive. */
  private deliver(messages: [string, string][]): void {
    if (messages.length === 0) return;
    const listeners = [...this.shared.listeners];
    setImmediate(() => {
      for (const [channel, payload] of messages) {
        for (const listener of listeners) if (listener.channel === channel) listener.onMessage(payload);
      }
    });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.shared.tail.then(fn, fn);
    this.shared.tail = run.catch(() => {});
    return run;
  }

  /** Callers' SQL is a fixed set of strings, so each is prepared once (a bound keeps a misuse from growing it). */
  private statement(sql: string): Database.Statement {
    let prepared = this.statements.get(sql);
    if (!prepared) {
      if (this.statements.size >= 512) this.statements.clear();
      this.statements.set(sql, (prepared = this.db.prepare(rewritePlaceholders(sql))));
    }
    return prepared;
  }
}

interface Listener {
  channel: string;
  onMessage: (payload: string) => void;
}

interface FileState {
  tail: Promise<unknown>;
  listeners: Set<Listener>;
  /** Open stores on the file; the entry goes with the last. */
  stores: number;
}

/** One queue and one set of listeners per database file in this process. */
const files = new Map<string | symbol, FileState>();

/** `$1` → `@p1` (outside string literals and quoted names); better-sqlite3 binds them by name. */
function rewritePlaceholders(sql: string): string {
  return sql.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"|\$(\d+)/g, (match, n: string | undefined) => (n ? `@p${n}` : match));
}

function bind(params: readonly unknown[]): Record<string, unknown> {
  const named: Record<string, unknown> = {};
  params.forEach((value, i) => {
    if (value === undefined) throw new TypeError(`SQL parameter $${i + 1} is undefined`);
    named[`p${i + 1}`] = typeof value === 'boolean' ? Number(value) : value;
  });
  return named;
}
