import Database from 'better-sqlite3';

/**
 * The CA's durable state in SQLite: join tokens (as SHA-256 hashes), every issued SVID
 * (serial, SPIFFE ID, validity, public key, the SVID it was renewed from) and revocations.
 * WAL mode with a busy timeout lets `palisade ca token create` and `revoke` write from
 * another process while the server runs; every multi-step change is one transaction, so a
 * crash leaves nothing half-written.
 */
export interface SvidRecord {
  serial: string;
  spiffeId: string;
  notBefore: number;
  notAfter: number;
  /** Public key as JSON JWK (EC P-256), with kid = RFC 7638 thumbprint. */
  jwk: string;
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
 * Schema versions, in order; PRAGMA user_version counts how many a store has applied. The
 * first is the schema from before versioning (CREATE IF NOT EXISTS, so such stores, at
 * user_version 0, pass it unchanged). Never edit an entry: append one.
 */
const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    spiffe_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
  );
  CREATE TABLE IF NOT EXISTS svids (
    serial TEXT PRIMARY KEY,
    spiffe_id TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    jwk TEXT NOT NULL,
    issued_at INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS svids_not_after ON svids (not_after);
  CREATE TABLE IF NOT EXISTS revocations (
    serial TEXT PRIMARY KEY REFERENCES svids (serial),
    revoked_at INTEGER NOT NULL
  );`,
  // Lineage (revocation follows renewals), supersession (the JWKS keeps one key per lineage)
  // and the per-identity renewal count.
  `ALTER TABLE svids ADD COLUMN predecessor TEXT REFERENCES svids (serial);
  ALTER TABLE svids ADD COLUMN superseded_at INTEGER;
  CREATE INDEX svids_predecessor ON svids (predecessor);
  CREATE INDEX svids_identity ON svids (spiffe_id, issued_at);`,
];

/** An SVID's status at @now (an SQL expression over `svids s`). */
const STATUS = `CASE
  WHEN r.serial IS NOT NULL THEN 'revoked'
  WHEN s.not_after <= @now THEN 'expired'
  WHEN s.superseded_at IS NOT NULL THEN 'superseded'
  ELSE 'live' END`;
/** Usable at @now: in the JWKS, and may renew. */
const USABLE = `r.serial IS NULL AND s.not_after > @now AND (s.superseded_at IS NULL OR s.superseded_at > @now - @grace)`;
const ROW = `s.serial, s.spiffe_id, s.predecessor, s.not_before, s.not_after, s.issued_at, s.superseded_at, r.revoked_at,
  ${STATUS} AS status`;
const FROM = 'FROM svids s LEFT JOIN revocations r ON r.serial = s.serial';

interface Row {
  serial: string;
  spiffe_id: string;
  predecessor: string | null;
  not_before: number;
  not_after: number;
  issued_at: number;
  superseded_at: number | null;
  revoked_at: number | null;
  status: SvidStatus;
}

export class CaStore {
  private readonly db: Database.Database;
  private readonly stmts;

  constructor(file: string) {
    this.db = new Database(file, { timeout: 5000 });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL'); // durable across process crashes in WAL mode
    this.db.pragma('foreign_keys = ON');
    this.migrate();
    this.stmts = {
      insertToken: this.db.prepare('INSERT INTO tokens (hash, spiffe_id, created_at, expires_at) VALUES (?, ?, ?, ?)'),
      token: this.db.prepare<[string], { spiffe_id: string; expires_at: number; used_at: number | null }>(
        'SELECT spiffe_id, expires_at, used_at FROM tokens WHERE hash = ?',
      ),
      consume: this.db.prepare('UPDATE tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL AND expires_at > ?'),
      insertSvid: this.db.prepare(
        'INSERT INTO svids (serial, spiffe_id, not_before, not_after, jwk, issued_at, predecessor) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      svid: this.db.prepare<{ serial: string; now: number; grace: number }, Row & { usable: number }>(
        `SELECT ${ROW}, ${USABLE} AS usable ${FROM} WHERE s.serial = @serial`,
      ),
      list: this.db.prepare<{ spiffeId: string | null; now: number }, Row>(
        `SELECT ${ROW} ${FROM} WHERE @spiffeId IS NULL OR s.spiffe_id = @spiffeId ORDER BY s.spiffe_id, s.issued_at, s.rowid`,
      ),
      // Renewals keep the SPIFFE ID, so a lineage never leaves its identity.
      revokeLineage: this.db.prepare<{ serial: string; now: number }>(
        `WITH RECURSIVE lineage (serial) AS (
           SELECT @serial UNION SELECT s.serial FROM svids s JOIN lineage l ON s.predecessor = l.serial)
         INSERT OR IGNORE INTO revocations (serial, revoked_at) SELECT serial, @now FROM lineage`,
      ),
      revokeIdentity: this.db.prepare<{ spiffeId: string; now: number }>(
        `INSERT OR IGNORE INTO revocations (serial, revoked_at)
         SELECT serial, @now FROM svids WHERE spiffe_id = @spiffeId AND not_after > @now`,
      ),
      renewalsSince: this.db.prepare<[string, number], { n: number }>(
        'SELECT COUNT(*) AS n FROM svids WHERE spiffe_id = ? AND predecessor IS NOT NULL AND issued_at > ?',
      ),
      // The predecessor and any earlier renewal of it: one lineage keeps one live SVID.
      supersede: this.db.prepare<{ predecessor: string; serial: string; now: number }>(
        `UPDATE svids SET superseded_at = @now
         WHERE superseded_at IS NULL AND serial != @serial AND (serial = @predecessor OR predecessor = @predecessor)`,
      ),
      live: this.db.prepare<{ now: number; grace: number }, { jwk: string }>(
        `SELECT s.jwk ${FROM} WHERE ${USABLE} ORDER BY s.not_after`,
      ),
    };
  }

  addToken(hash: string, spiffeId: string, now: number, expiresAt: number): void {
    this.stmts.insertToken.run(hash, spiffeId, now, expiresAt);
  }

  /** Read-only look at a token, to refuse hopeless joins before spending a signature on them. */
  tokenState(hash: string, now: number): { state: TokenState; spiffeId?: string } {
    const row = this.stmts.token.get(hash);
    if (!row) return { state: 'unknown' };
    if (row.used_at !== null) return { state: 'used', spiffeId: row.spiffe_id };
    if (row.expires_at <= now) return { state: 'expired', spiffeId: row.spiffe_id };
    return { state: 'valid', spiffeId: row.spiffe_id };
  }

  /**
   * Consumes the token and records the SVID in one transaction. The conditional UPDATE is
   * the single-use guarantee: of any number of concurrent attempts (in any process) exactly
   * one changes the row; the others record nothing.
   */
  consumeTokenAndRecord(hash: string, now: number, svid: SvidRecord): boolean {
    return this.db.transaction(() => {
      if (this.stmts.consume.run(now, hash, now).changes !== 1) return false;
      this.insert(svid, now, null);
      return true;
    }).immediate();
  }

  /** An SVID issued without a predecessor (mint). */
  recordSvid(svid: SvidRecord, now: number): void {
    this.insert(svid, now, null);
  }

  /**
   * Records a renewal of `predecessor` and supersedes it, in one transaction that checks
   * again what the caller checked before signing: a revocation or another renewal that
   * landed in between (in any process) wins, so a lineage revoked mid-renewal stays revoked.
   */
  recordRenewal(svid: SvidRecord, predecessor: string, now: number, rules: RenewalRules): RenewalRefusal | null {
    return this.db.transaction((): RenewalRefusal | null => {
      const current = this.svid(predecessor, now, rules.graceMs)!;
      if (!current.usable) return current.status as RenewalRefusal;
      if (this.renewalsSince(svid.spiffeId, now - rules.windowMs) >= rules.limit) return 'rate_limited';
      this.insert(svid, now, predecessor);
      this.stmts.supersede.run({ predecessor, serial: svid.serial, now });
      return null;
    }).immediate();
  }

  private insert(svid: SvidRecord, now: number, predecessor: string | null): void {
    this.stmts.insertSvid.run(svid.serial, svid.spiffeId, svid.notBefore, svid.notAfter, svid.jwk, now, predecessor);
  }

  /** One SVID and whether it is usable at `now` (in the JWKS, may renew). */
  svid(serial: string, now: number, graceMs: number): (SvidRow & { usable: boolean }) | undefined {
    const row = this.stmts.svid.get({ serial, now, grace: graceMs });
    return row && { ...toSvidRow(row), usable: row.usable === 1 };
  }

  /** Every SVID ever issued (of one identity), oldest first per identity. */
  list(now: number, spiffeId?: string): SvidRow[] {
    return this.stmts.list.all({ spiffeId: spiffeId ?? null, now }).map(toSvidRow);
  }

  renewalsSince(spiffeId: string, since: number): number {
    return this.stmts.renewalsSince.get(spiffeId, since)!.n;
  }

  /** Revokes the SVID and every SVID renewed from it, transitively; false when the serial is unknown. */
  revokeLineage(serial: string, now: number): boolean {
    return this.db.transaction(() => {
      if (!this.svid(serial, now, 0)) return false;
      this.stmts.revokeLineage.run({ serial, now });
      return true;
    }).immediate();
  }

  /** Revokes every unexpired SVID of the identity; the number newly revoked. */
  revokeIdentity(spiffeId: string, now: number): number {
    return this.stmts.revokeIdentity.run({ spiffeId, now }).changes;
  }

  /** JWKs of every usable SVID at `now`. */
  liveKeys(now: number, graceMs: number): object[] {
    return this.stmts.live.all({ now, grace: graceMs }).map((row) => JSON.parse(row.jwk));
  }

  close(): void {
    this.db.close();
  }

  /** Brings the store to the latest schema; concurrent openers serialize on the write lock. */
  private migrate(): void {
    this.db.transaction(() => {
      const version = this.db.pragma('user_version', { simple: true }) as number;
      if (version > MIGRATIONS.length) throw new Error(`CA state store has schema version ${version}; this palisade knows up to ${MIGRATIONS.length}`);
      for (const sql of MIGRATIONS.slice(version)) this.db.exec(sql);
      this.db.pragma(`user_version = ${MIGRATIONS.length}`);
    }).immediate();
  }
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
