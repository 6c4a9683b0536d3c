import cluster from 'node:cluster';
import { lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command, type Command as CommandType } from 'commander';
import { parseDuration } from '../agent/identity/duration.ts';
import { writeSecretFile } from '../platform/secret-file.ts';
import { CliError } from './errors.ts';
import { authority, guard, STORE_OPTION, withCa } from './ca-access.ts';
import { untilSignal, parseListen } from './process.ts';
import { svidCommand } from './ca-svid.ts';

/**
 * `palisade ca …`: the CA server and its admin commands. Admin commands work on the state
 * directly (the directory's SQLite file in WAL mode, or the `--store` database), so they need
 * access to the CA's files and store, not to its API, and they work while `ca serve` runs.
 */
export function register(program: CommandType): void {
  const ca = program.command('ca').description('certificate authority issuing SPIFFE X.509-SVIDs');

  ca.command('init')
    .description('create a CA: ECDSA P-256 root, key (mode 0600), state store, DIR/bundle.pem')
    .requiredOption('--dir <dir>', 'CA state directory')
    .requiredOption('--trust-domain <td>', 'SPIFFE trust domain, e.g. bank.example')
    .option(...STORE_OPTION)
    .action(async (opts: { dir: string; trustDomain: string; store?: string }) => {
      const { CertificateAuthority } = await authority();
      const { bundlePath } = await guard(() => CertificateAuthority.init(opts.dir, opts.trustDomain, { store: opts.store }));
      process.stdout.write(`CA for spiffe://${opts.trustDomain} created in ${opts.dir}\ntrust bundle: ${bundlePath}\n`);
    });

  ca.command('serve')
    .description('serve the CA API over HTTPS (join, renew, bundle, JWKS, health)')
    .requiredOption('--dir <dir>', 'CA state directory (root key and certificate; each replica needs a copy)')
    .option(...STORE_OPTION)
    .option('--listen <host:port>', 'address to listen on (loopback by default)', '127.0.0.1:8443')
    .option('--svid-ttl <duration>', 'lifetime of issued SVIDs', '1h')
    .option('--hostname <name...>', 'extra DNS names or IPs for the CA server certificate')
    .option('--join-failure-limit <n>', 'failed join attempts per client address and minute (per worker)', '20')
    .option('--renewal-limit <n>', 'renewals per SPIFFE ID and minute (all workers)', '30')
    .option('--supersede-grace <duration>', "how long a renewed SVID's key stays in the JWKS", '60s')
    .option('--workers <n>', 'server processes sharing the port and the state store (one per core)', '1')
    .action(async (opts: {
      dir: string; store?: string; listen: string; svidTtl: string; hostname?: string[]; joinFailureLimit: string; renewalLimit: string; supersedeGrace: string; workers: string;
    }) => {
      const { host, port } = parseListen(opts.listen);
      const svidTtlMs = await guard(async () => parseDuration(opts.svidTtl), 2);
      const supersedeGraceMs = await guard(async () => parseDuration(opts.supersedeGrace), 2);
      const limit = positiveInteger(opts.joinFailureLimit, '--join-failure-limit');
      const renewalsPerMinute = positiveInteger(opts.renewalLimit, '--renewal-limit');
      const workers = positiveInteger(opts.workers, '--workers');
      if (workers > 1 && cluster.isPrimary) return superviseWorkers(workers);
      const { startCaServer } = await import('../ca/server.ts');
      const server = await guard(() => startCaServer({
        dir: opts.dir, store: opts.store, host, port, svidTtlMs, supersedeGraceMs, renewalsPerMinute, hostnames: opts.hostname, joinFailureLimit: limit,
      }));
      const ready = `palisade CA for spiffe://${server.ca.trustDomain} listening on ${server.url}`;
      if (cluster.isWorker) process.send!({ ready });
      else process.stdout.write(`${ready}\n`);
      await untilSignal();
      await server.close();
      // A worker's IPC channel to the primary keeps it alive after the server closes; without
      // this a supervisor's SIGTERM left the workers (and so the primary) running.
      if (cluster.isWorker) cluster.worker?.disconnect();
    });

  const token = new Command('token').description('one-time join tokens');
  token
    .command('create')
    .description('print a new one-time join token bound to one SPIFFE ID')
    .requiredOption('--dir <dir>', 'CA state directory')
    .option(...STORE_OPTION)
    .requiredOption('--spiffe-id <id>', 'identity the joining agent will receive')
    .option('--ttl <duration>', 'how long the token stays valid', '10m')
    .action(async (opts: { dir: string; store?: string; spiffeId: string; ttl: string }) => {
      const ttl = await guard(async () => parseDuration(opts.ttl), 2);
      const { token: value } = await withCa(opts, (authority) => authority.createToken(opts.spiffeId, ttl));
      process.stdout.write(`${value}\n`);
    });
  ca.addCommand(token);

  ca.command('revoke')
    .description('revoke an SVID and every SVID renewed from it (--serial), or every unexpired SVID of an identity (--spiffe-id): they can no longer renew and leave the JWKS')
    .requiredOption('--dir <dir>', 'CA state directory')
    .option(...STORE_OPTION)
    .option('--serial <hex>', 'serial number (hex, colons allowed)')
    .option('--spiffe-id <id>', 'identity whose SVIDs are all revoked')
    .action(async (opts: { dir: string; store?: string; serial?: string; spiffeId?: string }) => {
      if (!opts.serial === !opts.spiffeId) throw new CliError('give exactly one of --serial HEX and --spiffe-id ID', 2);
      if (opts.serial) {
        await withCa(opts, (authority) => authority.revoke(opts.serial!));
        process.stdout.write(`revoked ${opts.serial} and the SVIDs renewed from it\n`);
      } else {
        const count = await withCa(opts, (authority) => authority.revokeIdentity(opts.spiffeId!));
        process.stdout.write(`revoked ${count} SVID${count === 1 ? '' : 's'} of ${opts.spiffeId}\n`);
      }
    });

  ca.addCommand(svidCommand());

  ca.command('mint')
    .description('issue an SVID with a new key to files (for workloads without an agent, or tests)')
    .requiredOption('--dir <dir>', 'CA state directory')
    .option(...STORE_OPTION)
    .requiredOption('--spiffe-id <id>', 'identity of the SVID')
    .option('--ttl <duration>', 'lifetime of the SVID', '1h')
    .requiredOption('--out <dir>', 'directory for svid.pem, key.pem (0600) and bundle.pem')
    .option('--force', 'replace an existing key.pem (never written through: a new file is renamed over it)')
    .action(async (opts: { dir: string; store?: string; spiffeId: string; ttl: string; out: string; force?: boolean }) => {
      const ttl = await guard(async () => parseDuration(opts.ttl), 2);
      const keyFile = path.join(opts.out, 'key.pem');
      // Checked before minting too, so a refusal does not leave an issued SVID behind.
      if (!opts.force && exists(keyFile)) throw new CliError(`${keyFile} already exists; refusing to overwrite it (--force replaces it)`, 2);
      const svid = await withCa(opts, (authority) => authority.mint(opts.spiffeId, ttl));
      await guard(() => {
        mkdirSync(opts.out, { recursive: true, mode: 0o700 });
        writeSecretFile(keyFile, svid.key_pem, { replace: opts.force });
        writeFileSync(path.join(opts.out, 'svid.pem'), svid.svid_pem);
        writeFileSync(path.join(opts.out, 'bundle.pem'), svid.bundle_pem);
      }, 2);
      process.stdout.write(`${svid.spiffe_id} serial ${svid.serial} valid until ${svid.not_after} written to ${opts.out}\n`);
    });
}

/**
 * Forks `count` copies of this very command; they share the listening socket (node:cluster)
 * and the state store, whose transactions keep tokens single-use across processes.
 * A worker that dies takes the CA down loudly rather than silently shrinking it.
 */
async function superviseWorkers(count: number): Promise<void> {
  const stop = untilSignal(); // listen before forking: a signal during startup still stops the workers
  const workers = Array.from({ length: count }, () => cluster.fork());
  let stopping = false;
  const failed = new Promise<never>((_, reject) =>
    cluster.on('exit', (worker, code) => {
      if (!stopping) reject(new CliError(`CA worker ${worker.process.pid} exited (${code}); stopping`));
    }),
  );
  failed.catch(() => {}); // observed below; never an unhandled rejection
  const readies = workers.map((worker) => new Promise<string>((resolve) => worker.on('message', (msg: { ready?: string }) => msg.ready && resolve(msg.ready))));
  try {
    const started = await Promise.race([Promise.all(readies), failed, stop]);
    if (started) process.stdout.write(`${started[0]} (${count} workers)\n`);
    await Promise.race([stop, failed]);
  } finally {
    stopping = true;
    for (const worker of workers) worker.process.kill('SIGTERM');
  }
}

function positiveInteger(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new CliError(`${flag} must be a positive integer`, 2);
  return n;
}

/** Anything at `file`, a dangling symlink included. */
function exists(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch {
    return false;
  }
}
