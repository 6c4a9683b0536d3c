/**
 * Revocation cannot be outrun by renewing: lineage, supersession, the renewal limit, the
 * admin commands and the migration of CA directories from before lineage.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CertificateAuthority, type IssuedSvid } from '../../ca/ca.ts';
import { CaError } from '../../ca/errors.ts';
import { startCaServer, type CaServer } from '../../ca/server.ts';
import { CARD, TD, caRequest, initCa, newCsr, palisadeRun, removeDir } from '../support/identity.ts';

const LEDGER = `spiffe://${TD}/ns/payments/sa/ledger`;
const test = suite('lineage');

/** A CA whose clock the test moves. */
async function clockedCa(dir: string, options: { renewalsPerMinute?: number } = {}) {
  const clock = { now: Date.now() };
  const ca = await CertificateAuthority.open(dir, { ...options, now: () => clock.now });
  return { ca, clock };
}

async function renewIn(ca: CertificateAuthority, svid: IssuedSvid): Promise<IssuedSvid> {
  return ca.renew(new X509Certificate(svid.svid_pem), (await newCsr()).csr);
}

const liveXs = async (ca: CertificateAuthority) => (await ca.liveJwks()).keys.map((k) => (k as { x: string }).x);
const xOf = (svid: IssuedSvid) => new X509Certificate(svid.svid_pem).publicKey.export({ format: 'jwk' }).x!;

async function refusedAsync(run: () => Promise<unknown>): Promise<CaError> {
  const err = await run().then(() => new Error('expected a CaError'), (e: unknown) => e);
  if (!(err instanceof CaError)) throw err;
  return err;
}

test('a stolen SVID renewed before its revocation dies with it: revoke follows the lineage (over mTLS)', async () => {
  const dir = await initCa();
  const server: CaServer = await startCaServer({ dir, port: 0 });
  const bundle = readFileSync(path.join(dir, 'bundle.pem'), 'utf8');
  const renew = async (svid: { svid_pem: string; key_pem: string }) => {
    const { privateKey, csr } = await newCsr();
    const res = await caRequest(`${server.url}/v1/renew`, bundle, { body: { csr }, cert: svid.svid_pem, key: svid.key_pem });
    return { res, svid: { ...res.json, key_pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() } };
  };
  try {
    const stolen = await server.ca.mint(CARD, 60_000);
    // The thief renews twice before anyone notices, so the serials it now holds were never reported.
    const first = await renew(stolen);
    assert.is(first.res.status, 200, JSON.stringify(first.res.json));
    const second = await renew(first.svid);
    assert.is(second.res.status, 200, JSON.stringify(second.res.json));
    const jwks = async () => (await caRequest(`${server.url}/v1/jwks`, bundle)).json.keys.map((k: { x: string }) => k.x);
    assert.ok((await jwks()).includes(xOf(second.svid)));

    await server.ca.revoke(stolen.serial); // the only serial the owner knows about

    const keys = await jwks();
    for (const svid of [stolen, first.svid, second.svid]) assert.not.ok(keys.includes(xOf(svid)), `${svid.serial} left the JWKS`);
    const again = await renew(second.svid);
    assert.is(again.res.status, 401);
    assert.is(again.res.json.error.code, 'svid_revoked');
    const rows = (await server.ca.svids(CARD));
    assert.equal(rows.map((r) => [r.serial, r.predecessor, r.status]), [
      [stolen.serial, null, 'revoked'],
      [first.svid.serial, stolen.serial, 'revoked'],
      [second.svid.serial, first.svid.serial, 'revoked'],
    ]);
  } finally {
    await server.close();
    removeDir(path.dirname(dir));
  }
});

test('a renewed SVID supersedes its predecessor: its key leaves the JWKS after the grace, and it can no longer renew', async () => {
  const dir = await initCa();
  const { ca, clock } = await clockedCa(dir);
  try {
    const a = await ca.mint(CARD, 3_600_000);
    const b = await renewIn(ca, a);
    assert.ok((await liveXs(ca)).includes(xOf(a)), 'in the grace, fingerprints signed with the old key still verify');
    clock.now += 61_000;
    assert.equal(await liveXs(ca), [xOf(b)]);
    assert.is((await refusedAsync(() => ca.renew(new X509Certificate(a.svid_pem), 'unused'))).code, 'svid_superseded');

    // Renewing the same SVID twice (a lost answer, or a thief racing the owner) leaves one live branch.
    const c1 = await renewIn(ca, b);
    const c2 = await renewIn(ca, b);
    clock.now += 61_000;
    assert.equal(await liveXs(ca), [xOf(c2)]);
    assert.equal((await ca.svids(CARD)).map((r) => r.status), ['superseded', 'superseded', 'superseded', 'live']);
    const rows = await ca.svids(CARD);
    assert.equal([c1, c2].map((svid) => rows.find((r) => r.serial === svid.serial)!.predecessor), [b.serial, b.serial]);
  } finally {
    await ca.close();
    removeDir(path.dirname(dir));
  }
});

test('renewals are rate limited per identity (429 with retry-after over HTTP); other identities are not slowed', async () => {
  const dir = await initCa();
  const { ca, clock } = await clockedCa(dir, { renewalsPerMinute: 3 });
  try {
    let card: IssuedSvid = await ca.mint(CARD, 3_600_000);
    for (let i = 0; i < 3; i++) card = await renewIn(ca, card);
    const limited = await refusedAsync(() => renewIn(ca, card));
    assert.is(limited.status, 429);
    assert.is(limited.code, 'renewal_rate_limited');
    assert.is((await ca.svids(CARD)).length, 4, 'nothing recorded for the refused renewal');
    await renewIn(ca, await ca.mint(LEDGER, 3_600_000));
    clock.now += 60_001;
    await renewIn(ca, card);
  } finally {
    await ca.close();
  }
  const server = await startCaServer({ dir, port: 0, renewalsPerMinute: 1 });
  try {
    const bundle = readFileSync(path.join(dir, 'bundle.pem'), 'utf8');
    const svid = await server.ca.mint(LEDGER, 60_000);
    const res = await caRequest(`${server.url}/v1/renew`, bundle, { body: { csr: (await newCsr()).csr }, cert: svid.svid_pem, key: svid.key_pem });
    assert.is(res.status, 429, JSON.stringify(res.json));
    assert.is(res.json.error.code, 'renewal_rate_limited');
    assert.ok(Number(res.headers['retry-after']) > 0);
  } finally {
    await server.close();
    removeDir(path.dirname(dir));
  }
});

test('CLI: ca svid list shows serials, lineage, expiry and status; ca revoke --spiffe-id revokes every SVID of the identity', async () => {
  const dir = await initCa();
  const ca = await CertificateAuthority.open(dir);
  const a = await ca.mint(CARD, 3_600_000);
  const b = await renewIn(ca, a);
  const other = await ca.mint(CARD, 3_600_000); // a second replica
  const ledger = await ca.mint(LEDGER, 3_600_000);
  await ca.close();
  try {
    const listed = await palisadeRun(['ca', 'svid', 'list', '--dir', dir, '--spiffe-id', CARD, '--format', 'json']);
    assert.is(listed.code, 0, listed.output);
    const rows = JSON.parse(listed.output);
    assert.equal(rows.map((r: any) => [r.serial, r.predecessor, r.status]), [
      [a.serial, null, 'superseded'],
      [b.serial, a.serial, 'live'],
      [other.serial, null, 'live'],
    ]);
    assert.is(rows[1].not_after, b.not_after);
    const table = await palisadeRun(['ca', 'svid', 'list', '--dir', dir]);
    assert.is(table.code, 0, table.output);
    assert.match(table.output, /^SERIAL\s+SPIFFE ID\s+RENEWED FROM\s+NOT AFTER\s+STATUS\n/);
    assert.match(table.output, new RegExp(`${b.serial}\\s+${CARD}\\s+${a.serial}\\s+${b.not_after}\\s+live`));
    assert.match(table.output, new RegExp(`${ledger.serial}\\s+${LEDGER}\\s+-\\s+`));

    const revoked = await palisadeRun(['ca', 'revoke', '--dir', dir, '--spiffe-id', CARD]);
    assert.is(revoked.code, 0, revoked.output);
    assert.match(revoked.output, new RegExp(`revoked 3 SVIDs of ${CARD}`));
    // What the revoke run left in the store, read directly (listing was checked above).
    const store = await CertificateAuthority.open(dir);
    const after = (await store.svids());
    await store.close();
    assert.equal(after.map((r) => [r.spiffeId, r.status]), [[CARD, 'revoked'], [CARD, 'revoked'], [CARD, 'revoked'], [LEDGER, 'live']]);

    const refusals = await Promise.all([ // bad input changes nothing, so these runs may overlap
      palisadeRun(['ca', 'revoke', '--dir', dir, '--serial', a.serial, '--spiffe-id', CARD]),
      palisadeRun(['ca', 'revoke', '--dir', dir]),
      palisadeRun(['ca', 'svid', 'list', '--dir', dir, '--format', 'yaml']),
      palisadeRun(['ca', 'revoke', '--dir', dir, '--spiffe-id', 'spiffe://elsewhere.example/x']),
    ]);
    for (const run of refusals) {
      assert.is(run.code, 2, run.output);
      assert.is(run.output.trim().split('\n').length, 1, run.output);
    }
  } finally {
    removeDir(path.dirname(dir));
  }
});

/** The store's schema as released before lineage (user_version 0). */
const SCHEMA_BEFORE_LINEAGE = `
CREATE TABLE tokens (hash TEXT PRIMARY KEY, spiffe_id TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, used_at INTEGER);
CREATE TABLE svids (serial TEXT PRIMARY KEY, spiffe_id TEXT NOT NULL, not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, jwk TEXT NOT NULL, issued_at INTEGER NOT NULL);
CREATE INDEX svids_not_after ON svids (not_after);
CREATE TABLE revocations (serial TEXT PRIMARY KEY REFERENCES svids (serial), revoked_at INTEGER NOT NULL);
`;

test('a CA directory from before lineage is migrated in place: its SVIDs renew, revoke and list; a newer store is refused', async () => {
  const dir = await initCa();
  const db = path.join(dir, 'state.db');
  const ca = await CertificateAuthority.open(dir);
  const old = await ca.mint(CARD, 3_600_000);
  const { token } = await ca.createToken(LEDGER, 600_000);
  await ca.close();
  // Rewrite the state as the previous release left it.
  const current = new Database(db);
  const svids = current.prepare('SELECT serial, spiffe_id, not_before, not_after, jwk, issued_at FROM svids').all();
  const tokens = current.prepare('SELECT hash, spiffe_id, created_at, expires_at, used_at FROM tokens').all();
  current.close();
  for (const suffix of ['', '-wal', '-shm']) rmSync(db + suffix, { force: true });
  const legacy = new Database(db);
  legacy.exec(SCHEMA_BEFORE_LINEAGE);
  for (const row of svids) legacy.prepare('INSERT INTO svids VALUES (@serial, @spiffe_id, @not_before, @not_after, @jwk, @issued_at)').run(row);
  for (const row of tokens) legacy.prepare('INSERT INTO tokens VALUES (@hash, @spiffe_id, @created_at, @expires_at, @used_at)').run(row);
  legacy.close();

  const migrated = await CertificateAuthority.open(dir);
  try {
    assert.equal((await migrated.svids()).map((r) => [r.serial, r.predecessor, r.status]), [[old.serial, null, 'live']]);
    const renewed = await renewIn(migrated, old);
    await migrated.revoke(old.serial);
    assert.is((await migrated.svids(CARD)).find((r) => r.serial === renewed.serial)!.status, 'revoked');
    assert.ok((await migrated.join(token, (await newCsr()).csr)).serial, 'tokens survive the migration');
  } finally {
    await migrated.close();
  }
  const newer = new Database(db);
  newer.pragma('user_version = 99');
  newer.close();
  try {
    assert.match(await CertificateAuthority.open(dir).then(() => 'succeeded', (err: Error) => err.message), /schema version 99/);
  } finally {
    removeDir(path.dirname(dir));
  }
});

/** The lineage step of the schema, as released at user_version 2. */
const LINEAGE_STEP = `
ALTER TABLE svids ADD COLUMN predecessor TEXT REFERENCES svids (serial);
ALTER TABLE svids ADD COLUMN superseded_at INTEGER;
CREATE INDEX svids_predecessor ON svids (predecessor);
CREATE INDEX svids_identity ON svids (spiffe_id, issued_at);
`;

test('SQLite CA stores at user_version 1 and 2 (releases before the shared store) open in place, lineage kept', async () => {
  for (const version of [1, 2]) {
    const dir = await initCa();
    const db = path.join(dir, 'state.db');
    const ca = await CertificateAuthority.open(dir);
    const a = await ca.mint(CARD, 3_600_000);
    const b = await renewIn(ca, a);
    const { token } = await ca.createToken(LEDGER, 600_000);
    await ca.close();
    const current = new Database(db);
    const columns = version === 2 ? 'serial, spiffe_id, not_before, not_after, jwk, issued_at, predecessor, superseded_at' : 'serial, spiffe_id, not_before, not_after, jwk, issued_at';
    const svids = current.prepare(`SELECT ${columns} FROM svids`).all() as Record<string, unknown>[];
    const tokens = current.prepare('SELECT hash, spiffe_id, created_at, expires_at, used_at FROM tokens').all();
    current.close();
    for (const suffix of ['', '-wal', '-shm']) rmSync(db + suffix, { force: true });
    const legacy = new Database(db);
    legacy.exec(SCHEMA_BEFORE_LINEAGE + (version === 2 ? LINEAGE_STEP : ''));
    legacy.pragma(`user_version = ${version}`);
    for (const row of svids) legacy.prepare(`INSERT INTO svids (${columns}) VALUES (${Object.keys(row).map((k) => `@${k}`).join(', ')})`).run(row);
    for (const row of tokens) legacy.prepare('INSERT INTO tokens VALUES (@hash, @spiffe_id, @created_at, @expires_at, @used_at)').run(row);
    legacy.close();

    const migrated = await CertificateAuthority.open(dir);
    try {
      const rows = (await migrated.svids(CARD)).map((r) => [r.serial, r.predecessor, r.status]);
      assert.equal(rows, version === 2 ? [[a.serial, null, 'superseded'], [b.serial, a.serial, 'live']] : [[a.serial, null, 'live'], [b.serial, null, 'live']], `user_version ${version}`);
      const c = await renewIn(migrated, b);
      await migrated.revoke(b.serial);
      assert.is((await migrated.svids(CARD)).find((r) => r.serial === c.serial)!.status, 'revoked', 'revocation follows renewals made after the migration');
      assert.ok((await migrated.join(token, (await newCsr()).csr)).serial, 'tokens survive the migration');
    } finally {
      await migrated.close();
      removeDir(path.dirname(dir));
    }
  }
});

test.run();
