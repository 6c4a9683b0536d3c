/**
 * Files and sockets on a machine other users share: keys never written through a planted
 * symlink nor readable by others whatever the umask, a CA directory others can write is
 * refused, and the SDS socket (which hands out the SVID key) is 0600 whatever the umask.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, TD, CARD, initCa, removeDir, tempDir } from '../support/identity.ts';

/** Runs `node args…` under `umask`, as a user with a careless shell profile would. */
function underUmask(umask: string, args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn('/bin/sh', ['-c', `umask ${umask}; exec "$0" "$@"`, process.execPath, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, output })));
}
const palisade = (args: string[], umask = '022') => underUmask(umask, [path.join(ROOT, 'bin/palisade.js'), ...args]);
const modeOf = (file: string) => lstatSync(file).mode & 0o777;

test('ca mint never writes a key through a planted symlink, and the key is 0600 under umask 000', async () => {
  const caDir = await initCa();
  const out = tempDir('mint');
  try {
    const victim = path.join(out, 'victim.txt');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, path.join(out, 'key.pem'));
    const args = ['ca', 'mint', '--dir', caDir, '--spiffe-id', CARD, '--out', out];
    const refused = await palisade(args, '000');
    assert.is(refused.code, 2, refused.output);
    assert.match(refused.output, /^palisade: .*key\.pem already exists; refusing to overwrite it \(--force replaces it\)\n$/);
    assert.is(readFileSync(victim, 'utf8'), 'precious\n');

    const forced = await palisade([...args, '--force'], '000');
    assert.is(forced.code, 0, forced.output);
    assert.is(readFileSync(victim, 'utf8'), 'precious\n');
    const key = path.join(out, 'key.pem');
    assert.ok(lstatSync(key).isFile());
    assert.is(modeOf(key), 0o600);
    assert.match(readFileSync(key, 'utf8'), /BEGIN PRIVATE KEY/);
  } finally {
    removeDir(out);
    removeDir(path.dirname(caDir));
  }
});

test('ca init writes the root key 0600 under umask 000 and refuses a directory others can write', async () => {
  const parent = tempDir('ca-init');
  try {
    const good = path.join(parent, 'good');
    const made = await palisade(['ca', 'init', '--dir', good, '--trust-domain', TD], '000');
    assert.is(made.code, 0, made.output);
    assert.is(modeOf(path.join(good, 'ca-key.pem')), 0o600);
    assert.is(modeOf(good) & 0o077, 0);

    const open = path.join(parent, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const refused = await palisade(['ca', 'init', '--dir', open, '--trust-domain', TD]);
    assert.is(refused.code, 2, refused.output);
    assert.is(refused.output, `palisade: CA directory ${open} is writable by group or others (mode 777); refusing to use it: run: chmod go-w ${open}\n`);
    assert.not.ok(existsSync(path.join(open, 'ca-key.pem')));
  } finally {
    removeDir(parent);
  }
});

test('ca serve refuses a CA directory, or a file in it, that others can write', async () => {
  const caDir = await initCa();
  try {
    const serve = () => palisade(['ca', 'serve', '--dir', caDir, '--listen', '127.0.0.1:0']);
    chmodSync(caDir, 0o770);
    const dirRefused = await serve();
    assert.is(dirRefused.code, 2, dirRefused.output);
    assert.match(dirRefused.output, /^palisade: CA directory .* is writable by group or others \(mode 770\); refusing to use it: run: chmod go-w .*\n$/);
    chmodSync(caDir, 0o700);
    const bundle = path.join(caDir, 'bundle.pem');
    chmodSync(bundle, 0o666);
    const fileRefused = await serve();
    assert.is(fileRefused.code, 2, fileRefused.output);
    assert.is(fileRefused.output, `palisade: CA file ${bundle} is writable by group or others (mode 666); refusing to use it: run: chmod go-w ${bundle}\n`);
  } finally {
    removeDir(path.dirname(caDir));
  }
});

test('the SDS socket is 0600 under umask 000 and replaces a stale one', async () => {
  const dir = tempDir('sds-socket');
  try {
    const socket = path.join(dir, 'agent.sock');
    writeFileSync(socket, 'stale');
    const server = new URL('../../agent/xds/server.ts', import.meta.url).pathname;
    const script = `const { createXdsServer } = await import(${JSON.stringify(server)});
      const xds = createXdsServer(${JSON.stringify(`unix:${socket}`)});
      await xds.start();
      const { lstatSync, readdirSync } = await import('node:fs');
      const st = lstatSync(${JSON.stringify(socket)});
      console.log(JSON.stringify({ socket: st.isSocket(), mode: st.mode & 0o777, entries: readdirSync(${JSON.stringify(dir)}) }));
      await xds.close();`;
    const { code, output } = await underUmask('000', ['--import', 'tsx', '--input-type=module', '-e', script]);
    assert.is(code, 0, output);
    assert.equal(JSON.parse(output), { socket: true, mode: 0o600, entries: ['agent.sock'] });
  } finally {
    removeDir(dir);
  }
});

test.run();
