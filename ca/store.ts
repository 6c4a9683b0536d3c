import Database from 'better-sqlite3';

/**
 * The CA's durable state in SQLite: join tokens (as SHA-256 hashes), every issued SVID
 * (serial, SPIFFE ID, validity, public key) and revocations. WAL mode with a busy timeout
 * lets `palisade ca token create` and `revoke` write from another process while the server
 * runs; every multi-step change is one transaction, so a crash leaves nothing half-written.
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

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tokens (
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
);
`;

export class CaStore {
  private readonly db: Database.Database;
  private readonly stmts;

  constructor(file: string) {
    this.db = new Database(file, { timeout: 5000 });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL'); // durable across process crashes in WAL mode
    this.db.pragma('foreign_keys = ON');
    this.db.exec(SCHEMA);
    this.stmts = {
      insertToken: this.db.prepare('INSERT INTO tokens (hash, spiffe_id, created_at, expires_at) VALUES (?, ?, ?, ?)'),
      token: this.db.prepare<[string], { spiffe_id: string; expires_at: number; used_at: number | null }>(
        'SELECT spiffe_id, expires_at, used_at FROM tokens WHERE hash = ?',
      ),
      consume: this.db.prepare('UPDATE tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL AND expires_at > ?'),
      insertSvid: this.db.prepare('INSERT INTO svids (serial, spiffe_id, not_before, not_after, jwk, issued_at) VALUES (?, ?, ?, ?, ?, ?)'),
      svid: this.db.prepare<[string], { spiffe_id: string; not_after: number; revoked: number }>(
        'SELECT spiffe_id, not_after, EXISTS (SELECT 1 FROM revocations r WHERE r.serial = s.serial) AS revoked FROM svids s WHERE serial = ?',
      ),
      revoke: this.db.prepare('INSERT OR IGNORE INTO revocations (serial, revoked_at) VALUES (?, ?)'),
      live: this.db.prepare<[number], { jwk: string }>(
        'SELECT jwk FROM svids s WHERE not_after > ? AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.serial = s.serial) ORDER BY not_after',
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
      this.recordSvidUnlocked(svid, now);
      return true;
    }).immediate();
  }

  recordSvid(svid: SvidRecord, now: number): void {
    this.recordSvidUnlocked(svid, now);
  }

  private recordSvidUnlocked(svid: SvidRecord, now: number): void {
    this.stmts.insertSvid.run(svid.serial, svid.spiffeId, svid.notBefore, svid.notAfter, svid.jwk, now);
  }

  svid(serial: string): { spiffeId: string; notAfter: number; revoked: boolean } | undefined {
    const row = this.stmts.svid.get(serial);
    return row && { spiffeId: row.spiffe_id, notAfter: row.not_after, revoked: row.revoked === 1 };
  }

  /** False when no SVID with that serial was ever issued. */
  revoke(serial: string, now: number): boolean {
    if (!this.stmts.svid.get(serial)) return false;
    this.stmts.revoke.run(serial, now);
    return true;
  }

  /** JWKs of every SVID that is unexpired and unrevoked at `now`. */
  liveKeys(now: number): object[] {
    return this.stmts.live.all(now).map((row) => JSON.parse(row.jwk));
  }

  close(): void {
    this.db.close();
  }
}
