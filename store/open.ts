/**
 * TEMPORARY, replaced by h/store's store/open.ts when that branch is merged (same
 * signature): a minimal SQLite Store over better-sqlite3 so the control plane can run
 * before it lands. SQLite only; one process.
 */
import { EventEmitter } from 'node:events';
import Database from 'better-sqlite3';
import type { Queryable, Row, Store } from './store.ts';

/** `$n` placeholders as `?`, with the parameters in the order they appear. */
function positional(sql: string, params: readonly unknown[]): [string, unknown[]] {
  const order: unknown[] = [];
  return [sql.replace(/\$(\d+)/g, (_m, n) => (order.push(params[Number(n) - 1]), '?')), order];
}

export async function openStore(spec: string): Promise<Store> {
  if (/^postgres(ql)?:\/\//i.test(spec)) throw new Error('PostgreSQL stores arrive with h/store');
  const file = spec.startsWith('sqlite:') ? spec.slice('sqlite:'.length) : spec;
  const db = new Database(file);
  const bus = new EventEmitter().setMaxListeners(0);
  let pending: [string, string][] | undefined;
  const q: Queryable = {
    async query<T extends Row>(sql: string, params: readonly unknown[] = []) {
      const [text, values] = positional(sql, params);
      return db.prepare(text).all(...values) as T[];
    },
    async run(sql, params = []) {
      const [text, values] = positional(sql, params);
      return db.prepare(text).run(...values).changes;
    },
    async notify(channel, payload) {
      if (pending) pending.push([channel, payload]);
      else queueMicrotask(() => bus.emit(channel, payload));
    },
  };
  let chain: Promise<unknown> = Promise.resolve();
  return {
    kind: 'sqlite',
    ...q,
    transaction(fn) {
      const run = chain.then(async () => {
        pending = [];
        db.exec('BEGIN IMMEDIATE');
        try {
          const result = await fn(q);
          db.exec('COMMIT');
          const sent = pending;
          pending = undefined;
          for (const [c, p] of sent) queueMicrotask(() => bus.emit(c, p));
          return result;
        } catch (err) {
          pending = undefined;
          db.exec('ROLLBACK');
          throw err;
        }
      });
      chain = run.catch(() => undefined);
      return run;
    },
    async migrate(component, migrations) {
      db.exec('CREATE TABLE IF NOT EXISTS migrations (component TEXT, n INTEGER, PRIMARY KEY (component, n))');
      const done = db.prepare('SELECT COUNT(*) AS n FROM migrations WHERE component = ?').get(component) as { n: number };
      migrations.slice(done.n).forEach((sql, i) => {
        db.exec(sql);
        db.prepare('INSERT INTO migrations VALUES (?, ?)').run(component, done.n + i);
      });
    },
    async listen(channel, onMessage) {
      bus.on(channel, onMessage);
      return async () => void bus.off(channel, onMessage);
    },
    async close() {
      db.close();
    },
  };
}
