/**
 * One conformance suite, run against both engines: what the CA and the control plane rely on
 * must hold the same on SQLite and on PostgreSQL. "Two stores" are two instances on one
 * database (two replicas; for SQLite, two opens of one file).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { openStore } from '../../store/open.ts';
import { PostgresStore } from '../../store/postgres.ts';
import type { Queryable, Store } from '../../store/store.ts';
import { findPostgres, startPostgres, type PostgresCluster } from '../support/postgres.ts';

/** The message it was refused with, or undefined when it succeeded. */
const refusal = (attempt: Promise<unknown>) => attempt.then(() => undefined, (err: Error) => err.message);

interface Backend {
  /** A fresh empty database; every call returns its spec. */
  database(): Promise<string>;
  done(): void;
}

function conformance(name: string, setup: (() => Promise<Backend>) | undefined) {
  const test = suite(`store: ${name}`);
  const it = setup ? test : test.skip;
  let backend: Backend;
  const open: Store[] = [];
  /** Two stores on one new database, closed after the test. */
  const pair = async (): Promise<[Store, Store]> => {
    const spec = await backend.database();
    const both = [await openStore(spec), await openStore(spec)] as [Store, Store];
    open.push(...both);
    return both;
  };
  test.before(async () => {
    if (setup) backend = await setup();
  });
  test.after.each(async () => {
    await Promise.all(open.splice(0).map((store) => store.close()));
  });
  test.after(() => backend?.done());

  it('$n placeholders bind in order, repeat, skip string literals; integers come back as numbers', async () => {
    const [store] = await pair();
    await store.run('CREATE TABLE t (id TEXT PRIMARY KEY, at BIGINT NOT NULL, note TEXT)');
    const ms = 1_765_000_000_123; // milliseconds do not fit 32 bits
    assert.is(await store.run('INSERT INTO t (id, at, note) VALUES ($1, $2, $3)', ['a', ms, null]), 1);
    const rows = await store.query("SELECT id, at, note, '$1' AS literal, $1 = $1 AS same, COUNT(*) OVER () AS n FROM t WHERE id = $1", ['a']);
    assert.equal(rows.map((r) => [r.id, r.at, r.note, r.literal, Boolean(r.same), r.n]), [['a', ms, null, '$1', true, 1]]);
    assert.equal(await store.query('UPDATE t SET at = at + $1 RETURNING at', [1]), [{ at: ms + 1 }]);
    assert.is(await store.run('DELETE FROM t WHERE id = $1', ['none']), 0);
  });

  it('a transaction commits when its function resolves and rolls back everything when it throws', async () => {
    const [a, b] = await pair();
    await a.run('CREATE TABLE t (id TEXT PRIMARY KEY)');
    assert.is(await a.transaction(async (tx) => (await tx.run('INSERT INTO t VALUES ($1)', ['kept'])) + 41), 42);
    const failure = await a.transaction(async (tx) => {
      await tx.run('INSERT INTO t VALUES ($1)', ['dropped']);
      assert.is((await tx.query('SELECT id FROM t WHERE id = $1', ['dropped'])).length, 1, 'visible inside');
      throw new Error('changed my mind');
    }).catch((err: Error) => err.message);
    assert.is(failure, 'changed my mind');
    // A failing statement rolls back the statements before it too.
    await a.transaction(async (tx) => {
      await tx.run('INSERT INTO t VALUES ($1)', ['dropped too']);
      await tx.run('INSERT INTO t VALUES ($1)', ['kept']);
    }).catch(() => {});
    assert.equal(await b.query('SELECT id FROM t ORDER BY id'), [{ id: 'kept' }]);
    // A tx kept past its end would run outside any transaction (or on a pooled connection another one holds).
    let leaked!: Queryable;
    await a.transaction(async (tx) => void (leaked = tx));
    for (const late of [leaked.run('INSERT INTO t VALUES ($1)', ['late']), leaked.query('SELECT 1 AS one'), leaked.notify('late', 'x')]) {
      assert.match((await refusal(late)) ?? 'ran', /transaction is over/);
    }
  });

  it('no lost update: 20 concurrent read-modify-write transactions from two stores all count', async () => {
    const [a, b] = await pair();
    await a.run('CREATE TABLE counter (n BIGINT NOT NULL)');
    await a.run('INSERT INTO counter VALUES (0)');
    let attempts = 0;
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).transaction(async (tx) => {
      attempts++;
      const [{ n }] = await tx.query<{ n: number }>('SELECT n FROM counter');
      await tx.run('UPDATE counter SET n = $1', [n + 1]);
    })));
    assert.equal(await b.query('SELECT n FROM counter'), [{ n: 20 }]);
    assert.ok(attempts >= 20);
  });

  it('migrate applies each migration once, in order, even when two stores start at once; a newer store is refused', async () => {
    const [a, b] = await pair();
    const migrations = [
      'CREATE TABLE m (step INTEGER NOT NULL)',
      'INSERT INTO m VALUES (1)',
      'INSERT INTO m VALUES (2); INSERT INTO m VALUES (3)',
    ];
    await Promise.all([a.migrate('demo', migrations), b.migrate('demo', migrations), a.migrate('other', ['CREATE TABLE o (x INTEGER)'])]);
    await a.migrate('demo', migrations);
    await b.migrate('demo', migrations.slice(0, 2).concat(migrations[2]!));
    assert.equal(await a.query('SELECT step FROM m ORDER BY step'), [{ step: 1 }, { step: 2 }, { step: 3 }]);
    await a.migrate('demo', [...migrations, 'INSERT INTO m VALUES (4)']);
    assert.equal((await b.query('SELECT step FROM m ORDER BY step')).length, 4);
    const refused = await b.migrate('demo', migrations).then(() => 'migrated', (err: Error) => err.message);
    assert.match(refused, /demo state in this store has schema version 4; this palisade knows up to 3/);
    const broken = await a.migrate('broken', ['CREATE TABLE ok (x INTEGER)', 'CREATE TABLE (']).then(() => 'migrated', () => 'failed');
    assert.is(broken, 'failed');
    await a.migrate('broken', ['CREATE TABLE ok (x INTEGER)']); // the first one was recorded, so it is not run again
  });

  it('notify reaches the other store only after commit, and never from a rolled-back transaction', async () => {
    const [a, b] = await pair();
    await a.run('CREATE TABLE t (id TEXT PRIMARY KEY)');
    const seen: { payload: string; rowVisible: boolean }[] = [];
    const arrived = new Map<string, () => void>();
    const unlisten = await b.listen('policy.changed', (payload) => {
      // The row written with the notify is already visible to the listener's store.
      void b.query('SELECT id FROM t WHERE id = $1', [payload]).then((rows) => {
        seen.push({ payload, rowVisible: rows.length === 1 });
        arrived.get(payload)?.();
      });
    });
    const next = (payload: string) => new Promise<void>((resolve) => arrived.set(payload, resolve));

    const first = next('v1');
    await a.transaction(async (tx) => {
      await tx.notify('policy.changed', 'v1');
      await tx.run('INSERT INTO t VALUES ($1)', ['v1']); // after the notify: delivery must wait for the commit
    });
    await first;
    await a.transaction(async (tx) => {
      await tx.run('INSERT INTO t VALUES ($1)', ['never']);
      await tx.notify('policy.changed', 'never');
      throw new Error('roll back');
    }).catch(() => {});
    const second = next('v2');
    await a.run('INSERT INTO t VALUES ($1)', ['v2']);
    await a.notify('policy.changed', 'v2'); // outside a transaction: at once
    await second; // notifications arrive in commit order, so a 'never' would have come before this
    assert.equal(seen, [{ payload: 'v1', rowVisible: true }, { payload: 'v2', rowVisible: true }]);

    await unlisten();
    let heard!: () => void;
    const third = new Promise<void>((resolve) => (heard = resolve));
    await a.listen('policy.changed', () => heard());
    await a.notify('policy.changed', 'v3');
    await third;
    assert.is(seen.length, 2, 'nothing after unlisten');
  });

  it('channel names and payloads are held to PostgreSQL limits on every engine', async () => {
    const [a] = await pair();
    for (const channel of ['', 'Upper', 'has space', 'x'.repeat(64), 'semi;colon']) {
      assert.ok(await refusal(a.notify(channel, 'p')), `notify(${JSON.stringify(channel)}) is refused`);
      assert.ok(await refusal(a.listen(channel, () => {})), `listen(${JSON.stringify(channel)}) is refused`);
    }
    assert.match((await refusal(a.notify('ok', 'x'.repeat(8000)))) ?? '', /under 8000 bytes/);
  });

  return test;
}

const sqlite = () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'palisade-store-'));
  let n = 0;
  return Promise.resolve<Backend>({
    database: async () => (++n % 2 ? path.join(dir, `s${n}.db`) : `sqlite:${path.join(dir, `s${n}.db`)}`),
    done: () => rmSync(dir, { recursive: true, force: true }),
  });
};

const bin = findPostgres('store conformance (PostgreSQL)');
let cluster: PostgresCluster | undefined;
const postgres = bin === undefined ? undefined : (async (): Promise<Backend> => {
  cluster = await startPostgres(bin);
  return { database: () => cluster!.createDatabase(), done: () => cluster!.stop() };
});

conformance("sqlite", sqlite).run();

const pgOnly = conformance('postgres', postgres);
const it = postgres ? pgOnly : pgOnly.skip;

it('postgres: a serialization conflict is retried, not returned', async () => {
  const url = await cluster!.createDatabase();
  const [a, b] = [await openStore(url), await openStore(url)];
  try {
    await a.run('CREATE TABLE counter (n BIGINT NOT NULL)');
    await a.run('INSERT INTO counter VALUES (0)');
    // Both read before either writes: under SERIALIZABLE one of them must fail with 40001.
    let reads = 0;
    let release!: () => void;
    const bothRead = new Promise<void>((resolve) => (release = resolve));
    let attempts = 0;
    const increment = (store: Store) => store.transaction(async (tx) => {
      attempts++;
      const [{ n }] = await tx.query<{ n: number }>('SELECT n FROM counter');
      if (++reads === 2) release();
      await bothRead;
      await tx.run('UPDATE counter SET n = $1', [n + 1]);
    });
    await Promise.all([increment(a), increment(b)]);
    assert.equal(await a.query('SELECT n FROM counter'), [{ n: 2 }]);
    assert.is(attempts, 3, 'the loser ran once more');
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

it('postgres: LISTEN survives losing its connection, and says so to re-read', async () => {
  const url = await cluster!.createDatabase();
  const [a, b] = [await openStore(url), await openStore(url)];
  try {
    const payloads: string[] = [];
    let got!: () => void;
    let reconnected!: () => void;
    const back = new Promise<void>((resolve) => (reconnected = resolve));
    await b.listen('agents', (payload) => {
      payloads.push(payload);
      got?.();
    }, () => reconnected());
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    // The listening session, killed as a failover or a restart would.
    const killed = await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()");
    await admin.end();
    assert.is(killed.rowCount, 1);
    await back;
    const delivered = new Promise<void>((resolve) => (got = resolve));
    await a.notify('agents', 'after');
    await delivered;
    assert.equal(payloads, ['after']);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

it('postgres: a server that stops answering fails requests within the timeouts, and the store recovers', async () => {
  const url = await cluster!.createDatabase();
  const timeouts = { connectMs: 300, queryMs: 300, statementMs: 10_000, idleInTransactionMs: 30_000 };
  const [warm, cold] = [new PostgresStore(url, timeouts), new PostgresStore(url, timeouts)];
  const HUNG = 'still waiting after 5 s';
  const outcome = (attempt: Promise<unknown>) =>
    Promise.race([attempt.then(() => 'answered', (err: Error) => err.message), new Promise<string>((r) => setTimeout(r, 5_000, HUNG))]);
  try {
    await warm.query('SELECT 1'); // a pooled connection already open when the server freezes
    cluster!.pause();
    try {
      assert.match(await outcome(warm.query('SELECT 1')), /timeout/i, 'a statement on an open connection');
      assert.match(await outcome(warm.transaction((tx) => tx.query('SELECT 1'))), /timeout/i, 'a transaction');
      assert.match(await outcome(cold.query('SELECT 1')), /timeout/i, 'opening a connection');
    } finally {
      cluster!.resume();
    }
    // The connections that timed out were discarded, not handed to the next request.
    assert.equal(await warm.query('SELECT 2 AS n'), [{ n: 2 }]);
    assert.equal(await cold.query('SELECT 3 AS n'), [{ n: 3 }]);
  } finally {
    await Promise.all([warm.close(), cold.close()]);
  }
});

it('postgres: PostgreSQL itself cancels a statement past the statement timeout; the URL can set it', async () => {
  const url = await cluster!.createDatabase();
  const store = await openStore(`${url}?statement_timeout=200`);
  try {
    assert.match(await refusal(store.query('SELECT pg_sleep(3)')) ?? 'answered', /statement timeout/);
    assert.equal(await store.query('SELECT 1 AS n'), [{ n: 1 }]);
  } finally {
    await store.close();
  }
});

const test = suite('store: openStore');

test('openStore refuses what it cannot open in one line, without the password', async () => {
  const refused = async (spec: string) => (await refusal(openStore(spec))) ?? 'opened';
  assert.match(await refused('mysql://u:pw@db/x'), /^unsupported store "mysql:\/\/u:\*\*\*@db\/x": give a file path or sqlite:PATH/);
  assert.match(await refused(''), /unsupported store/);
  assert.match(await refused('sqlite:'), /unsupported store/);
  const port = 1; // nothing listens there
  const pgError = await refused(`postgres://palisade:secret@127.0.0.1:${port}/x`);
  assert.match(pgError, /^cannot use PostgreSQL store postgres:\/\/palisade:\*\*\*@127\.0\.0\.1:1\/x: /);
  assert.not.match(pgError, /secret/);
  assert.match(await refused('/nonexistent/dir/state.db'), /^cannot open SQLite store \/nonexistent\/dir\/state.db: /);
});


pgOnly.run();
test.run();
