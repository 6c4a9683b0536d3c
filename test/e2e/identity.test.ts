import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CertificateAuthority } from '../../ca/ca.ts';
import { startCaServer, type CaServer } from '../../ca/server.ts';
import { createCsr, generateKeyPair } from '../../spiffe/pki.ts';
import { CARD, TD, caRequest, eventually, freePort, palisade, palisadeRun, removeDir, sdsClient, tempDir, type Proc } from '../support/identity.ts';

const serveArgs = (dir: string, port: number, ttl = '1h') => ['ca', 'serve', '--dir', dir, '--listen', `127.0.0.1:${port}`, '--svid-ttl', ttl, '--join-failure-limit', '1000'];

async function startCa(dir: string, port: number, ttl?: string): Promise<Proc> {
  const proc = palisade(serveArgs(dir, port, ttl));
  await proc.waitFor(/listening on https:/);
  return proc;
}

async function createToken(dir: string, spiffeId = CARD): Promise<string> {
  const { code, output } = await palisadeRun(['ca', 'token', 'create', '--dir', dir, '--spiffe-id', spiffeId]);
  assert.is(code, 0, output);
  return output.trim();
}

async function csrAndKey() {
  const { privateKey } = await generateKeyPair();
  return { csr: createCsr(privateKey), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

test('CA processes: tokens created while serving, single use across two servers on one store, state survives restart, CLI revoke', async () => {
  const home = tempDir('ca-proc');
  const dir = path.join(home, 'ca');
  const procs: Proc[] = [];
  try {
    await CertificateAuthority.init(dir, TD);
    const bundle = readFileSync(path.join(dir, 'bundle.pem'), 'utf8');
    const [portA, portB] = [await freePort(), await freePort()];
    procs.push(...(await Promise.all([startCa(dir, portA), startCa(dir, portB)])));
    const raced = await createToken(dir); // the CLI writes to the store while both servers run
    const later = await inProcessToken(dir);

    // 20 joins with one token, split over two CA processes sharing the store: exactly one SVID.
    const attempts = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const { csr } = await csrAndKey();
        return caRequest(`https://127.0.0.1:${i % 2 ? portA : portB}/v1/join`, bundle, { body: { token: raced, csr } });
      }),
    );
    assert.is(attempts.filter((r) => r.status === 200).length, 1, JSON.stringify(attempts.map((r) => r.status)));
    assert.ok(attempts.every((r) => r.status === 200 || r.json.error.code === 'token_used'));

    const member = await csrAndKey();
    const joined = await caRequest(`https://127.0.0.1:${portA}/v1/join`, bundle, { body: { token: later, csr: member.csr } });
    assert.is(joined.status, 200);

    for (const proc of procs.splice(0)) await proc.stop();
    procs.push(await startCa(dir, portA));
    const replay = await caRequest(`https://127.0.0.1:${portA}/v1/join`, bundle, { body: { token: raced, csr: (await csrAndKey()).csr } });
    assert.is(replay.json.error.code, 'token_used', 'used tokens stay used across a restart');
    // Each renewal brings a key pair of its own (the CA certifies a key once).
    const renew = async () => caRequest(`https://127.0.0.1:${portA}/v1/renew`, bundle, { body: { csr: (await csrAndKey()).csr }, cert: joined.json.svid_pem, key: member.keyPem });
    assert.is((await renew()).status, 200, 'issued serials survive a restart');

    const revoke = await palisadeRun(['ca', 'revoke', '--dir', dir, '--serial', joined.json.serial]);
    assert.is(revoke.code, 0, revoke.output);
    assert.is((await renew()).json.error.code, 'svid_revoked', 'CLI revocation applies to the running server');
  } finally {
    for (const proc of procs) await proc.stop();
    removeDir(home);
  }
});

test('ca serve --workers 2: issues over HTTPS, and one SIGTERM stops the primary and every worker', async () => {
  const home = tempDir('ca-workers');
  const dir = path.join(home, 'ca');
  try {
    await CertificateAuthority.init(dir, TD);
    const bundle = readFileSync(path.join(dir, 'bundle.pem'), 'utf8');
    const port = await freePort();
    const ca = palisade(['ca', 'serve', '--dir', dir, '--listen', `127.0.0.1:${port}`, '--workers', '2']);
    await ca.waitFor(/listening on .* \(2 workers\)/);
    const { csr } = await csrAndKey();
    const joined = await caRequest(`https://127.0.0.1:${port}/v1/join`, bundle, { body: { token: await inProcessToken(dir), csr } });
    assert.is(joined.status, 200);
    ca.child.kill('SIGTERM'); // once, as a supervisor would: workers hold IPC channels and keep-alive sockets
    const code = await Promise.race([ca.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 10_000))]);
    assert.is.not(code, 'still running');
  } finally {
    removeDir(home);
  }
});

test('agent process: rotation pushed over SDS, CA down then back, key never on disk', async () => {
  const home = tempDir('agent-proc');
  const [dir, work, tmp] = ['ca', 'work', 'tmp'].map((name) => path.join(home, name)) as [string, string, string];
  mkdirSync(work);
  mkdirSync(tmp);
  const procs: Proc[] = [];
  let sds: ReturnType<typeof sdsClient> | undefined;
  let ca: CaServer | undefined;
  try {
    await CertificateAuthority.init(dir, TD);
    const [port, adminPort] = [await freePort(), await freePort()];
    // The CA runs in-process here so that its restart is instant and the timing is the agent's alone.
    ca = await startCaServer({ dir, port, svidTtlMs: 10_000 });
    const socket = path.join(work, 'sds.sock');
    const agent = palisade(
      ['agent', '--ca-url', `https://127.0.0.1:${port}`, '--bundle', path.join(dir, 'bundle.pem'), '--token', await inProcessToken(dir), '--sds', `unix:${socket}`, '--admin', `127.0.0.1:${adminPort}`],
      { cwd: work, env: { TMPDIR: tmp, TMP: tmp, TEMP: tmp } },
    );
    procs.push(agent);
    await agent.waitFor(/agent ready/);
    const health = async () => (await (await fetch(`http://127.0.0.1:${adminPort}/healthz`)).json()).status as string;
    assert.is(await health(), 'ok');

    sds = sdsClient(socket);
    const stream = sds.stream();
    const keys: string[] = [];
    const observe = (response: Awaited<ReturnType<typeof stream.next>>) => {
      keys.push(sds!.decode(response).default.tls_certificate.private_key.inline_bytes);
      stream.send({ resource_names: ['default', 'ROOTCA'], version_info: response.version_info, response_nonce: response.nonce }); // ACK
      return response.version_info;
    };
    stream.send({ resource_names: ['default', 'ROOTCA'] });
    const v1 = observe(await stream.next());

    // The CA goes away before the first rotation (half of a 10 s SVID): the agent keeps
    // serving its SVID, retries, and says it is degraded.
    await ca.close();
    ca = undefined;
    await eventually(async () => (await health()) === 'degraded', 10_000, 100);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    assert.match(metrics, /palisade_agent_svid_renewal_failures_total [1-9]/);
    assert.is(stream.pending(), 0, 'nothing pushed while the CA is away');

    // The CA comes back before the SVID expires: a retry renews and the open stream gets it.
    ca = await startCaServer({ dir, port, svidTtlMs: 10_000 });
    const v2 = observe(await stream.next(5_000));
    assert.is.not(v2, v1);
    assert.is(await health(), 'ok');
    // And the next scheduled rotation (new key again) is pushed as well.
    const v3 = observe(await stream.next(8_000));
    assert.is.not(v3, v2);
    stream.close();
    await agent.stop();

    // Key material of every SVID the agent held, in the forms it could have been written in.
    const needles = keys.flatMap((pem) => {
      const key = createPrivateKey(pem);
      const body = pem.split('\n').filter((line) => line && !line.startsWith('-----'));
      return [Buffer.from(body[1]!), key.export({ type: 'pkcs8', format: 'der' }), Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url')];
    });
    assert.equal(new Set(keys).size, 3, 'a new key per SVID');
    for (const scanned of [work, tmp, dir]) assert.equal(filesContaining(scanned, needles), [], `key material under ${scanned}`);
    assert.not.match(agent.output(), /PRIVATE KEY/);
  } finally {
    sds?.close();
    for (const proc of procs) await proc.stop();
    await ca?.close();
    removeDir(home);
  }
});

test('CLI: init and mint write what they promise; agent exits clearly on bad token, untrusted or unreachable CA; CA refuses a readable key', async () => {
  const home = tempDir('cli');
  const [dir, other, fresh, minted] = ['ca', 'other', 'fresh', 'minted'].map((name) => path.join(home, name)) as [string, string, string, string];
  await CertificateAuthority.init(dir, TD);
  await CertificateAuthority.init(other, TD);
  const server = await startCaServer({ dir, port: 0 });
  try {
    const closedPort = await freePort();
    const agentArgs = (url: string, bundle: string) => ['agent', '--ca-url', url, '--bundle', bundle, '--token', 'pjt_x', '--join-attempts', '2'];
    chmodSync(path.join(other, 'ca-key.pem'), 0o644);
    const [badToken, untrusted, unreachable, readableKey, init, mint] = await Promise.all([
      palisadeRun(agentArgs(server.url, path.join(dir, 'bundle.pem'))),
      palisadeRun(agentArgs(server.url, path.join(other, 'bundle.pem'))),
      palisadeRun(agentArgs(`https://127.0.0.1:${closedPort}`, path.join(dir, 'bundle.pem'))),
      palisadeRun(serveArgs(other, 0)),
      palisadeRun(['ca', 'init', '--dir', fresh, '--trust-domain', TD]),
      palisadeRun(['ca', 'mint', '--dir', dir, '--spiffe-id', CARD, '--ttl', '5m', '--out', minted]),
    ]);
    assert.is(badToken.code, 1);
    assert.match(badToken.output, /token_unknown/);
    assert.is(untrusted.code, 1);
    assert.match(untrusted.output, /trust bundle does not verify the CA/);
    assert.is(unreachable.code, 1);
    assert.match(unreachable.output, /unreachable .*gave up after 2 attempts/);
    assert.is(readableKey.code, 1);
    assert.match(readableKey.output, /accessible by group or others/);
    for (const run of [badToken, untrusted, unreachable, readableKey]) assert.not.match(run.output, /\n\s+at /, 'no stack trace');

    assert.is(init.code, 0, init.output);
    assert.is(statSync(path.join(fresh, 'ca-key.pem')).mode & 0o777, 0o600);
    assert.ok(new X509Certificate(readFileSync(path.join(fresh, 'bundle.pem'))).ca);
    assert.is(mint.code, 0, mint.output);
    assert.is(statSync(path.join(minted, 'key.pem')).mode & 0o777, 0o600);
    const svid = new X509Certificate(readFileSync(path.join(minted, 'svid.pem')));
    assert.is(svid.subjectAltName, `URI:${CARD}`);
    assert.ok(svid.checkPrivateKey(createPrivateKey(readFileSync(path.join(minted, 'key.pem')))));
    assert.equal(readFileSync(path.join(minted, 'bundle.pem'), 'utf8'), readFileSync(path.join(dir, 'bundle.pem'), 'utf8'));
    const serial = /serial ([0-9a-f]+)/.exec(mint.output)![1]!;
    assert.ok((await server.ca.svids(CARD)).some((row) => row.serial === serial), 'minted SVIDs are recorded like any other');
  } finally {
    await server.close();
    removeDir(home);
  }
});

async function inProcessToken(dir: string): Promise<string> {
  const ca = await CertificateAuthority.open(dir);
  try {
    return (await ca.createToken(CARD, 60_000)).token;
  } finally {
    await ca.close();
  }
}

/** Every file under `dir` (recursively) that contains any of the needles. */
function filesContaining(dir: string, needles: Buffer[]): string[] {
  const hits: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const file = path.join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name);
    if (!entry.isFile()) continue;
    const bytes = readFileSync(file);
    if (needles.some((needle) => bytes.includes(needle))) hits.push(file);
  }
  return hits;
}

test.run();
