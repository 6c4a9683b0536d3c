/** What both engines enforce the same way, so a caller that works on one works on the other. */

/** Where `migrate` records what it applied: one row per component and version. */
export const MIGRATIONS_TABLE = 'palisade_migrations';

/** PostgreSQL's limits (channel: an identifier of at most 63 bytes; payload: under 8000 bytes), for SQLite too. */
export function checkNotification(channel: string, payload: string): void {
  if (!/^[a-z_][a-z0-9_.]{0,62}$/.test(channel)) throw new TypeError(`notification channel ${JSON.stringify(channel)} must be 1-63 of a-z, 0-9, _ and .`);
  if (Buffer.byteLength(payload) >= 8000) throw new RangeError('notification payload must be under 8000 bytes');
}

/** A store migrated by a newer palisade: refuse it rather than write to a schema we do not know. */
export function newerSchemaError(component: string, applied: number, known: number): Error {
  return new Error(`the ${component} state in this store has schema version ${applied}; this palisade knows up to ${known}`);
}
