/**
 * Two `palisade ca serve` replicas on one PostgreSQL database (the CA directory copied: one
 * root key), attacked through their HTTPS APIs: one join token raced from 20 clients across
 * both, a revoked key looked up at the other replica, renewals spread over both to beat the
 * per-identity limit. Skipped, loudly, where PostgreSQL's server binaries are missing.
 */
import { X509Certificate } from 'node:crypto';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CARD, TD, caRequest, newCsr, palisade, palisadeRun, removeDir, tempDir, type Proc } from '../support/identity.ts';
import { findPostgres, startPostgres, type PostgresCluster } from '../support/postgres.ts';

const RENEWAL_LIMIT = 3;
const test = suite('ca replicas on PostgreSQL');
const bin = findPostgres('CA replicas on PostgreSQL');
const it = bin ? test : test.skip;

const ctx = {} as { cluster: PostgresCluster; store: string; home: string; dirs: [string, string]; replicas: Proc[]; urls: [string, string]; bundle: string };

test.before(async () => {
  if (!bin) return;
  ctx.cluster = await startPostgres(bin);
  ctx.store = await ctx.cluster.createDatabase();
  ctx.home = tempDir('ca-replicas');
  const [a, b] = (ctx.dirs = [path.join(ctx.home, 'a'), path.join(ctx.home, 'b')]);
  const init = await palisadeRun(['ca', 'init', '--dir', a, '--trust-domain', TD, '--store', ctx.store]);
  assert.is(init.code, 0, init.output);
  cpSync(a, b, { recursive: true }); // the same root key on both replicas
  ctx.bundle = readFileSync(path.join(a, 'bundle.pem'), 'utf8');
  ctx.replicas = ctx.dirs.map((dir) => palisade([
    'ca', 'serve', '--dir', dir, '--store', ctx.store, '--listen', '127.0.0.1:0',
    '--renewal-limit', String(RENEWAL_LIMIT), '--join-failure-limit', '1000',
  ]));
  ctx.urls = (await Promise.all(ctx.replicas.map((replica) => replica.waitFor(/listening on (\S+)/)))).map((m) => m[1]!) as [string, string];
});

test.after(async () => {
  await Promise.all((ctx.replicas ?? []).map((replica) => replica.stop()));
  ctx.cluster?.stop();
  if (ctx.home) removeDir(ctx.home);
});

/** `palisade ca …` against replica A's directory and the shared store. */
async function admin(args: string[]): Promise<string> {
  const run = await palisadeRun(['ca', ...args, '--dir', ctx.dirs[0], '--store', ctx.store]);
  assert.is(run.code, 0, run.output);
  return run.output;
}

async function mint(spiffeId: string, out: string): Promise<{ serial: string; cert: string; key: string }> {
  const printed = await admin(['mint', '--spiffe-id', spiffeId, '--ttl', '1h', '--out', out]);
  const serial = printed.match(/serial ([0-9a-f]+)/)![1]!;
  return { serial, cert: readFileSync(path.join(out, 'svid.pem'), 'utf8'), key: readFileSync(path.join(out, 'key.pem'), 'utf8') };
}

const jwksXs = async (url: string) => ((await caRequest(`${url}/v1/jwks`, ctx.bundle)).json.keys as { x: string }[]).map((k) => k.x);
const xOf = (pem: string) => new X509Certificate(pem).publicKey.export({ format: 'jwk' }).x!;

it('one join token raced by 20 clients across both replicas issues exactly one SVID; the rest get token_used', async () => {
  const token = (await admin(['token', 'create', '--spiffe-id', CARD])).trim();
  const csrs = await Promise.all(Array.from({ length: 20 }, async () => (await newCsr()).csr));
  const answers = await Promise.all(csrs.map((csr, i) => caRequest(`${ctx.urls[i % 2]}/v1/join`, ctx.bundle, { body: { token, csr } })));
  const issued = answers.filter((res) => res.status === 200);
  assert.is(issued.length, 1, JSON.stringify(answers.map((res) => res.status)));
  assert.is(issued[0]!.json.spiffe_id, CARD);
  for (const res of answers.filter((r) => r.status !== 200)) {
    assert.equal([res.status, res.json.error.code], [401, 'token_used']);
  }
  const listed = JSON.parse(await admin(['svid', 'list', '--spiffe-id', CARD, '--format', 'json']));
  assert.equal(listed.map((row: { serial: string }) => row.serial), [issued[0]!.json.serial], 'one SVID recorded');
});

it('a revocation made through replica A is out of replica B\'s JWKS at once, and B refuses its renewal', async () => {
  const id = `spiffe://${TD}/ns/payments/sa/revoked`;
  const svid = await mint(id, path.join(ctx.home, 'revoked'));
  assert.ok((await jwksXs(ctx.urls[1])).includes(xOf(svid.cert)), 'B publishes the key A\'s store recorded');
  await admin(['revoke', '--serial', svid.serial]);
  assert.not.ok((await jwksXs(ctx.urls[1])).includes(xOf(svid.cert)), 'B no longer publishes it');
  assert.not.ok((await jwksXs(ctx.urls[0])).includes(xOf(svid.cert)));
  const renewal = await caRequest(`${ctx.urls[1]}/v1/renew`, ctx.bundle, { body: { csr: (await newCsr()).csr }, cert: svid.cert, key: svid.key });
  assert.equal([renewal.status, renewal.json.error?.code], [401, 'svid_revoked']);
});

it('the renewal limit holds across replicas: concurrent renewals spread over both grant exactly the limit', async () => {
  const id = `spiffe://${TD}/ns/payments/sa/renewer`;
  const svid = await mint(id, path.join(ctx.home, 'renewer'));
  const attempts = 4 * RENEWAL_LIMIT;
  const answers = await Promise.all(Array.from({ length: attempts }, async (_, i) =>
    caRequest(`${ctx.urls[i % 2]}/v1/renew`, ctx.bundle, { body: { csr: (await newCsr()).csr }, cert: svid.cert, key: svid.key })));
  const statuses = answers.map((res) => res.status);
  assert.is(statuses.filter((s) => s === 200).length, RENEWAL_LIMIT, JSON.stringify(statuses));
  for (const res of answers.filter((r) => r.status !== 200)) assert.equal([res.status, res.json.error.code], [429, 'renewal_rate_limited']);
  const rows = JSON.parse(await admin(['svid', 'list', '--spiffe-id', id, '--format', 'json']));
  assert.is(rows.length, 1 + RENEWAL_LIMIT, 'nothing recorded for a refused renewal');
});

it('a CA directory used with PostgreSQL refuses admin commands without --store (they would write to a file no replica reads)', async () => {
  const run = await palisadeRun(['ca', 'revoke', '--dir', ctx.dirs[1], '--spiffe-id', CARD]);
  assert.is(run.code, 2, run.output);
  assert.match(run.output, /^palisade: this CA keeps its state in PostgreSQL .*give --store postgres:\/\/…\n$/, run.output);
  const listed = JSON.parse(await admin(['svid', 'list', '--spiffe-id', CARD, '--format', 'json']));
  assert.equal(listed.map((row: { status: string }) => row.status), ['live'], 'nothing was revoked anywhere');
});

it('a second CA (another root) pointed at the same database is refused before it writes anything', async () => {
  const other = path.join(ctx.home, 'other');
  const run = await palisadeRun(['ca', 'init', '--dir', other, '--trust-domain', 'other.example', '--store', ctx.store]);
  assert.is(run.code, 2, run.output);
  assert.match(run.output, /^palisade: this state store belongs to another CA \(root SHA-256 [0-9A-F:]+\); give each CA its own\n$/, run.output);
  assert.not.ok(existsSync(path.join(other, 'ca-key.pem')), 'no key was written');
  // A database that cannot be reached stops a replica at start, in one line.
  const replica = await palisadeRun(['ca', 'serve', '--dir', ctx.dirs[0], '--store', `${ctx.store}x`]);
  assert.is(replica.code, 1, replica.output);
  assert.match(replica.output, /^palisade: cannot use PostgreSQL store postgres:\/\/postgres@127\.0\.0\.1:\d+\/\w+x: .*\n$/, replica.output);
});

test.run();
