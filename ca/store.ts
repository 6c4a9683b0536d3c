import { openStore } from '../store/open.ts';
import type { Queryable, Store } from '../store/store.ts';
import { CaError } from './errors.ts';

/**
 * The CA's durable state in the shared store (SQLite by default, PostgreSQL for replicas):
 * join tokens (as SHA-256 hashes), every issued SVID (serial, SPIFFE ID, validity, public
 * key, the SVID it was renewed from) and revocations. `palisade ca token create` and
 * `revoke` write from another process while servers run; every multi-step change is one
 * serializable transaction, so a crash leaves nothing half-written and replicas agree.
 */
export interface SvidRecord {
  serial: string;
  spiffeId: string;
  notBefore: number;
  notAfter: number;
  /** Public key as JSON JWK (EC P-256), with kid = RFC 7638 thumbprint. */
  jwk: string;
  /** That thumbprint: a key is certified once (see `insert`). */
  kid: string;
}

export type TokenState = 'valid' | 'unknown' | 'used' | 'expired';

/**
 * live: no successor; superseded: renewed (its key stays in the JWKS for the grace after
 * `supersededAt`); revoked (it or an SVID of its lineage); expired.
 */
export type SvidStatus = 'live' | 'superseded' | 'revoked' | 'expired';

export interface SvidRow {
  serial: string;
  spiffeId: string;
  /** The SVID this one was renewed from; null for a join or a mint. */
  predecessor: string | null;
  notBefore: number;
  notAfter: number;
  issuedAt: number;
  supersededAt: number | null;
  revokedAt: number | null;
  status: SvidStatus;
}

/** Why a renewal could not be recorded: the predecessor's status, or its identity renews too often. */
export type RenewalRefusal = Exclude<SvidStatus, 'live'> | 'rate_limited';

export interface RenewalRules {
  /** A superseded SVID stays usable (JWKS, renewal) this long after its successor was issued. */
  graceMs: number;
  /** At most `limit` renewals per SPIFFE ID in any `windowMs`. */
  limit: number;
  windowMs: number;
}

/**
 * SQLite CA stores from before the shared store counted their schema in PRAGMA user_version
 * (the first entry is the schema from before versioning: CREATE IF NOT EXISTS, so such stores,
 * at user_version 0, pass it unchanged). New SQLite stores are made by the same steps, so
 * every SQLite CA store has one schema. Never edit an entry; new changes go to MIGRATIONS.
 */
const SQLITE_LEGACY = [
  [
    `CREATE TABLE IF NOT EXISTS tokens (
      hash TEXT PRIMARY KEY,
      spiffe_id TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      used_at INTEGER
    )`,
    `CREATE TABLE IF NOT EXISTS svids (
      serial TEXT PRIMARY KEY,
      spiffe_id TEXT NOT NULL,
      not_before INTEGER NOT NULL,
      not_after INTEGER NOT NULL,
      jwk TEXT NOT NULL,
      issued_at INTEGER NOT NULL
    )`,
    'CREATE INDEX IF NOT EXISTS svids_not_after ON svids (not_after)',
    `CREATE TABLE IF NOT EXISTS revocations (
      serial TEXT PRIMARY KEY REFERENCES svids (serial),
      revoked_at INTEGER NOT NULL
    )`,
  ],
  // Lineage (revocation follows renewals), supersession (the JWKS keeps one key per lineage)
  // and the per-identity renewal count.
  [
    'ALTER TABLE svids ADD COLUMN predecessor TEXT REFERENCES svids (serial)',
    'ALTER TABLE svids ADD COLUMN superseded_at INTEGER',
    'CREATE INDEX svids_predecessor ON svids (predecessor)',
    'CREATE INDEX svids_identity ON svids (spiffe_id, issued_at)',
  ],
];

/**
 * The store's migrations of the `ca` component, on both engines. The first is the schema
 * SQLITE_LEGACY arrives at (on SQLite it finds every table there already), with BIGINT for
 * the millisecond columns and, for PostgreSQL, `seq`: the issue order SQLite keeps in rowid.
 */
const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    spiffe_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
  );
  CREATE TABLE IF NOT EXISTS svids (
    serial TEXT PRIMARY KEY,
    spiffe_id TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    jwk TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    predecessor TEXT REFERENCES svids (serial),
    superseded_at BIGINT,
    seq BIGSERIAL
  );
  CREATE INDEX IF NOT EXISTS svids_not_after ON svids (not_after);
  CREATE INDEX IF NOT EXISTS svids_predecessor ON svids (predecessor);
  CREATE INDEX IF NOT EXISTS svids_identity ON svids (spiffe_id, issued_at);
  CREATE TABLE IF NOT EXISTS revocations (
    serial TEXT PRIMARY KEY REFERENCES svids (serial),
    revoked_at BIGINT NOT NULL
  );`,
  // The CA the state belongs to (its root's SHA-256): tokens and SVIDs of one CA mean
  // nothing to another, so a second CA pointed at this store is refused.
  'CREATE TABLE ca_root (id INTEGER PRIMARY KEY CHECK (id = 1), fingerprint TEXT NOT NULL)',
  // Each SVID's key id (RFC 7638), so a key certified once is refused ever after. Not unique:
  // a store from before this may hold a reused key; rows from then are filled in on open.
  'ALTER TABLE svids ADD COLUMN kid TEXT; CREATE INDEX svids_kid ON svids (kid)',
];

/** Issue order: the engine-specific part of the schema (see MIGRATIONS). */
const ISSUE_ORDER = { sqlite: 's.rowid', postgres: 's.seq' } as const;

/** An SVID's status at $1 (an SQL expression over `svids s`). */
const STATUS = `CASE
  WHEN r.serial IS NOT NULL THEN 'revoked'
  WHEN s.not_after <= $1 THEN 'expired'
  WHEN s.superseded_at IS NOT NULL THEN 'superseded'
  ELSE 'live' END`;
/** Usable at $1 (in the JWKS, and may renew), with $2 = $1 - the supersede grace. */
const USABLE = 'r.serial IS NULL AND s.not_after > $1 AND (s.superseded_at IS NULL OR s.superseded_at > $2)';
const ROW = `s.serial, s.spiffe_id, s.predecessor, s.not_before, s.not_after, s.issued_at, s.superseded_at, r.revoked_at,
  ${STATUS} AS status`;
const FROM = 'FROM svids s LEFT JOIN revocations r ON r.serial = s.serial';

type Row = {
  serial: string;
  spiffe_id: string;
  predecessor: string | null;
  not_before: number;
  not_after: number;
  issued_at: number;
  superseded_at: number | null;
  revoked_at: number | null;
  status: SvidStatus;
};

export class CaStore {
  private constructor(private readonly db: Store) {}

  /**
   * Opens the store `spec` names (see store/open.ts), brings it to the latest schema and
   * claims it for the CA with this root (SHA-256 fingerprint), or refuses it when another
   * CA's root claimed it first.
   */
  static async open(spec: string, root: string): Promise<CaStore> {
    const db = await openStore(spec);
    try {
      if (db.kind === 'sqlite') await adoptSqliteLegacy(db);
      await db.migrate('ca', MIGRATIONS);
      await fillKeyIds(db);
      const owner = await db.transaction(async (tx) => {
        await tx.run('INSERT INTO ca_root (id, fingerprint) VALUES (1, $1) ON CONFLICT DO NOTHING', [root]);
        return (await tx.query<{ fingerprint: string }>('SELECT fingerprint FROM ca_root'))[0]!.fingerprint;
      });
      if (owner !== root) throw new CaError(409, 'store_of_another_ca', `this state store belongs to another CA (root SHA-256 ${owner}); give each CA its own`);
    } catch (err) {
      await db.close();
      throw err;
    }
    return new CaStore(db);
  }

  async addToken(hash: string, spiffeId: string, now: number, expiresAt: number): Promise<void> {
    await this.db.run('INSERT INTO tokens (hash, spiffe_id, created_at, expires_at) VALUES ($1, $2, $3, $4)', [hash, spiffeId, now, expiresAt]);
  }

  /** Read-only look at a token, to refuse hopeless joins before spending a signature on them. */
  async tokenState(hash: string, now: number): Promise<{ state: TokenState; spiffeId?: string }> {
    const [row] = await this.db.query<{ spiffe_id: string; expires_at: number; used_at: number | null }>(
      'SELECT spiffe_id, expires_at, used_at FROM tokens WHERE hash = $1', [hash]);
    if (!row) return { state: 'unknown' };
    if (row.used_at !== null) return { state: 'used', spiffeId: row.spiffe_id };
    if (row.expires_at <= now) return { state: 'expired', spiffeId: row.spiffe_id };
    return { state: 'valid', spiffeId: row.spiffe_id };
  }

  /**
   * Consumes the token and records the SVID in one transaction. The conditional UPDATE is
   * the single-use guarantee: of any number of concurrent attempts (in any process, on any
   * replica) exactly one changes the row; the others record nothing.
   */
  consumeTokenAndRecord(hash: string, now: number, svid: SvidRecord): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const consumed = await tx.run('UPDATE tokens SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND expires_at > $1', [now, hash]);
      if (consumed !== 1) return false;
      await insert(tx, svid, now, null);
      return true;
    });
  }

  /** An SVID issued without a predecessor (mint). */
  async recordSvid(svid: SvidRecord, now: number): Promise<void> {
    await insert(this.db, svid, now, null);
  }

  /**
   * Records a renewal of `predecessor` and supersedes it, in one transaction that checks
   * again what the caller checked before signing: a revocation or another renewal that
   * landed in between (in any process) wins, so a lineage revoked mid-renewal stays revoked.
   */
  recordRenewal(svid: SvidRecord, predecessor: string, now: number, rules: RenewalRules): Promise<RenewalRefusal | null> {
    return this.db.transaction(async (tx): Promise<RenewalRefusal | null> => {
      const current = (await svidIn(tx, predecessor, now, rules.graceMs))!;
      if (!current.usable) return current.status as RenewalRefusal;
      if (await renewalsIn(tx, svid.spiffeId, now - rules.windowMs) >= rules.limit) return 'rate_limited';
      await insert(tx, svid, now, predecessor);
      // The predecessor and any earlier renewal of it: one lineage keeps one live SVID.
      await tx.run(
        `UPDATE svids SET superseded_at = $1
         WHERE superseded_at IS NULL AND serial != $2 AND (serial = $3 OR predecessor = $3)`,
        [now, svid.serial, predecessor],
      );
      return null;
    });
  }

  /** One SVID and whether it is usable at `now` (in the JWKS, may renew). */
  svid(serial: string, now: number, graceMs: number): Promise<(SvidRow & { usable: boolean }) | undefined> {
    return svidIn(this.db, serial, now, graceMs);
  }

  /** Every SVID ever issued (of one identity), oldest first per identity. */
  async list(now: number, spiffeId?: string): Promise<SvidRow[]> {
    const order = `ORDER BY s.spiffe_id, s.issued_at, ${ISSUE_ORDER[this.db.kind]}`;
    const rows = spiffeId === undefined
      ? await this.db.query<Row>(`SELECT ${ROW} ${FROM} ${order}`, [now])
      : await this.db.query<Row>(`SELECT ${ROW} ${FROM} WHERE s.spiffe_id = $2 ${order}`, [now, spiffeId]);
    return rows.map(toSvidRow);
  }

  renewalsSince(spiffeId: string, since: number): Promise<number> {
    return renewalsIn(this.db, spiffeId, since);
  }

  /** Revokes the SVID and every SVID renewed from it, transitively; false when the serial is unknown. */
  revokeLineage(serial: string, now: number): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      if (!(await svidIn(tx, serial, now, 0))) return false;
      // Renewals keep the SPIFFE ID, so a lineage never leaves its identity.
      await tx.run(
        `WITH RECURSIVE lineage (serial) AS (
           SELECT CAST($1 AS TEXT) UNION SELECT s.serial FROM svids s JOIN lineage l ON s.predecessor = l.serial)
         INSERT INTO revocations (serial, revoked_at) SELECT serial, CAST($2 AS BIGINT) FROM lineage WHERE true
         ON CONFLICT DO NOTHING`,
        [serial, now],
      );
      return true;
    });
  }

  /** Revokes every unexpired SVID of the identity; the number newly revoked. */
  revokeIdentity(spiffeId: string, now: number): Promise<number> {
    return this.db.run(
      `INSERT INTO revocations (serial, revoked_at)
       SELECT serial, CAST($2 AS BIGINT) FROM svids WHERE spiffe_id = $1 AND not_after > $2
       ON CONFLICT DO NOTHING`,
      [spiffeId, now],
    );
  }

  /** JWKs of every usable SVID at `now`, read from the store each time: a revocation at any replica counts at once. */
  async liveKeys(now: number, graceMs: number): Promise<object[]> {
    const rows = await this.db.query<{ jwk: string }>(`SELECT s.jwk ${FROM} WHERE ${USABLE} ORDER BY s.not_after`, [now, now - graceMs]);
    return rows.map((row) => JSON.parse(row.jwk));
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

/** Brings an SQLite CA store to the last legacy version; concurrent openers serialize on the write lock. */
async function adoptSqliteLegacy(db: Store): Promise<void> {
  await db.transaction(async (tx) => {
    const [{ user_version: version }] = await tx.query<{ user_version: number }>('PRAGMA user_version');
    if (version > SQLITE_LEGACY.length) {
      throw new Error(`CA state store has schema version ${version}; this palisade knows up to ${SQLITE_LEGACY.length}`);
    }
    for (const statement of SQLITE_LEGACY.slice(version).flat()) await tx.run(statement);
    await tx.run(`PRAGMA user_version = ${SQLITE_LEGACY.length}`);
  });
}

/**
 * Records an SVID, in the caller's transaction. Its key must never have been certified
 * before, for this identity or any other: the JWKS (and so every sidecar) vouches for keys,
 * not serials, so a revoked key certified again would make the revoked SVID good again.
 */
async function insert(db: Queryable, svid: SvidRecord, now: number, predecessor: string | null): Promise<void> {
  const [earlier] = await db.query<{ serial: string }>('SELECT serial FROM svids WHERE kid = $1 LIMIT 1', [svid.kid]);
  if (earlier) {
    throw new CaError(409, 'key_reused', `this public key was already certified (serial ${earlier.serial}); every SVID needs a key pair of its own: generate a new one`);
  }
  await db.run(
    'INSERT INTO svids (serial, spiffe_id, not_before, not_after, jwk, issued_at, predecessor, kid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
    [svid.serial, svid.spiffeId, svid.notBefore, svid.notAfter, svid.jwk, now, predecessor, svid.kid],
  );
}

/** Key ids of SVIDs recorded before the column existed, from their stored JWK. */
async function fillKeyIds(db: Store): Promise<void> {
  const rows = await db.query<{ serial: string; jwk: string }>('SELECT serial, jwk FROM svids WHERE kid IS NULL');
  if (rows.length === 0) return;
  await db.transaction(async (tx) => {
    for (const { serial, jwk } of rows) await tx.run('UPDATE svids SET kid = $1 WHERE serial = $2', [JSON.parse(jwk).kid, serial]);
  });
}

async function svidIn(db: Queryable, serial: string, now: number, graceMs: number): Promise<(SvidRow & { usable: boolean }) | undefined> {
  const [row] = await db.query<Row & { usable: number }>(
    `SELECT ${ROW}, CASE WHEN ${USABLE} THEN 1 ELSE 0 END AS usable ${FROM} WHERE s.serial = $3`, [now, now - graceMs, serial]);
  return row && { ...toSvidRow(row), usable: row.usable === 1 };
}

async function renewalsIn(db: Queryable, spiffeId: string, since: number): Promise<number> {
  const [{ n }] = await db.query<{ n: number }>(
    'SELECT COUNT(*) AS n FROM svids WHERE spiffe_id = $1 AND predecessor IS NOT NULL AND issued_at > $2', [spiffeId, since]);
  return n;
}

function toSvidRow(row: Row): SvidRow {
  return {
    serial: row.serial,
    spiffeId: row.spiffe_id,
    predecessor: row.predecessor,
    notBefore: row.not_before,
    notAfter: row.not_after,
    issuedAt: row.issued_at,
    supersededAt: row.superseded_at,
    revokedAt: row.revoked_at,
    status: row.status,
  };
}
