import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import * as undici from 'undici';
import { Client, Pool, errors } from '../../agent/undici.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

test("agent/undici.ts hands out undici's own classes, with the request API undici's index adds", () => {
  assert.is(Pool, undici.Pool);
  assert.is(Client, undici.Client);
  assert.is(errors, undici.errors);
  assert.is(Pool.prototype.request, undici.Dispatcher.prototype.request);
});

test("on its own it serves a request through a pool without loading undici's index (fetch, WebSocket, caches)", () => {
  const script = `
    import { createServer } from 'node:http';
    import { createRequire } from 'node:module';
    const { Pool } = await import('./agent/undici.ts');
    const server = createServer((_req, res) => res.end('ok')).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const pool = new Pool('http://127.0.0.1:' + server.address().port);
    const res = await pool.request({ method: 'GET', path: '/' });
    const body = await res.body.text();
    await pool.close();
    server.close();
    const index = createRequire(import.meta.url).resolve('undici');
    console.log(JSON.stringify({ status: res.statusCode, body, indexLoaded: index in createRequire(import.meta.url).cache }));
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout.trim().split('\n').pop()!), { status: 200, body: 'ok', indexLoaded: false });
});

test.run();
