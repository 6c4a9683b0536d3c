/**
 * `--store` on the CA's commands: a value naming no store, or a database that cannot be
 * reached, is one line without the password, and nothing is written to the CA directory's
 * own SQLite file instead.
 */
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CARD, initCa, palisadeRun, removeDir } from '../support/identity.ts';

test('ca commands refuse a --store they cannot use in one line, never with its password, and never fall back to the local file', async () => {
  const dir = await initCa();
  const db = path.join(dir, 'state.db');
  try {
    for (const suffix of ['', '-wal', '-shm']) rmSync(db + suffix, { force: true }); // to see whether anything recreates it
    const unknown = await palisadeRun(['ca', 'token', 'create', '--dir', dir, '--spiffe-id', CARD, '--store', 'mysql://ops:s3cret@db.internal/ca']);
    assert.is(unknown.code, 2, unknown.output);
    assert.is(unknown.output, 'palisade: unsupported store "mysql://ops:***@db.internal/ca": give a file path or sqlite:PATH (SQLite), or postgres://… / postgresql://… (PostgreSQL)\n');
    const unreachable = await palisadeRun(['ca', 'revoke', '--dir', dir, '--spiffe-id', CARD, '--store', 'postgres://ops:s3cret@127.0.0.1:1/ca']);
    assert.is(unreachable.code, 1, unreachable.output);
    assert.match(unreachable.output, /^palisade: cannot use PostgreSQL store postgres:\/\/ops:\*\*\*@127\.0\.0\.1:1\/ca: [^\n]+\n$/);
    assert.not.match(unknown.output + unreachable.output, /s3cret/);
    assert.not.ok(existsSync(db), 'nothing fell back to the directory\'s SQLite file');
  } finally {
    removeDir(path.dirname(dir));
  }
});

test.run();
