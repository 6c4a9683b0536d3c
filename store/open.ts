import type { Store } from './store.ts';

/** What `--store` accepts, for messages. */
export const STORE_SPEC_HELP = 'a file path or sqlite:PATH (SQLite), or postgres://… / postgresql://… (PostgreSQL)';

/**
 * Opens the store a `--store` value names: `postgres://…` or `postgresql://…` → PostgreSQL
 * (checked with one round trip, so a wrong address fails at start, not at the first
 * request); `sqlite:PATH` or a plain file path → SQLite. Each engine's module loads only
 * when used. Anything else, an unknown scheme included, is refused in one line.
 */
export async function openStore(spec: string): Promise<Store> {
  if (isPostgres(spec)) {
    const { PostgresStore } = await import('./postgres.ts');
    const store = new PostgresStore(spec);
    try {
      await store.query('SELECT 1');
    } catch (err) {
      await store.close().catch(() => {});
      throw new Error(`cannot use PostgreSQL store ${redact(spec)}: ${(err as Error).message}`);
    }
    return store;
  }
  const file = spec.startsWith('sqlite:') ? spec.slice('sqlite:'.length) : spec;
  // A scheme we do not know is a mistake, not a file name (sqlite:PATH names such a file).
  if (file === '' || (/^[a-z][a-z0-9+.-]*:/i.test(file) && !spec.startsWith('sqlite:'))) {
    throw new StoreSpecError(`unsupported store ${JSON.stringify(redact(spec))}: give ${STORE_SPEC_HELP}`);
  }
  const { SqliteStore } = await import('./sqlite.ts');
  try {
    return new SqliteStore(file);
  } catch (err) {
    throw new Error(`cannot open SQLite store ${file}: ${(err as Error).message}`);
  }
}

/** A `--store` value that names no store we know: bad input, not a failure of the store. */
export class StoreSpecError extends Error {}

export const isPostgres = (spec: string) => /^postgres(ql)?:\/\//i.test(spec);

/** The spec without its password, for messages and logs. */
export function redact(spec: string): string {
  return spec.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, '$1***@');
}
