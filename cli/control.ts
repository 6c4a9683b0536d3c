/**
 * `palisade control …`: the control plane (docs/control.md). `init` creates its state (the
 * store: SQLite in DIR by default), `token create` makes operator tokens on that state
 * directly, `serve` joins the CA and serves the API.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { Store } from '../store/store.ts';
import { CliError } from './errors.ts';
import { parseListen, untilSignal } from './process.ts';

const STORE_OPTION = ['--store <spec>', 'where the state lives: postgres://… for replicas sharing one database (default: SQLite in DIR)'] as const;

export function register(program: Command): void {
  const control = program.command('control').description('control plane: policies managed through an API, compiled, versioned and pushed to every agent');

  control.command('init')
    .description('create the control plane\'s state in DIR (and its tables in --store)')
    .requiredOption('--dir <dir>', 'control plane state directory')
    .option(...STORE_OPTION)
    .action(async (opts: { dir: string; store?: string }) => {
      mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
      await withStore(opts, async () => {});
      process.stdout.write(`control plane state in ${opts.dir}\n`);
    });

  control.command('token')
    .description('operator tokens').command('create')
    .description('a new bearer token for the API, printed once (only its hash is kept)')
    .requiredOption('--dir <dir>', 'control plane state directory')
    .requiredOption('--role <role>', "admin (reads and changes) or viewer (reads only)")
    .option('--name <name>', 'who holds it: recorded with every change made with it', 'operator')
    .option(...STORE_OPTION)
    .action(async (opts: { dir: string; role: string; name: string; store?: string }) => {
      const { createToken, ROLES } = await import('../control/tokens.ts');
      if (!(ROLES as readonly string[]).includes(opts.role)) throw new CliError(`--role must be ${ROLES.join(' or ')}`, 2);
      const { token, operator } = await withStore(opts, (store) => createToken(store, opts.role as 'admin', opts.name));
      process.stderr.write(`token ${operator.id} (${operator.role}, ${operator.name}); shown once, keep it secret:\n`);
      process.stdout.write(`${token}\n`);
    });

  control.command('serve')
    .description('join the CA and serve the operator and agent API over HTTPS')
    .requiredOption('--dir <dir>', 'control plane state directory')
    .option('--listen <host:port>', 'address to listen on (loopback by default)', '127.0.0.1:8444')
    .requiredOption('--ca-url <url>', 'CA address, e.g. https://127.0.0.1:8443')
    .requiredOption('--bundle <file>', 'trust bundle (PEM): verifies the CA and every agent')
    .option('--token <token>', 'one-time join token for the control plane\'s SVID (or env PALISADE_JOIN_TOKEN)')
    .option('--hostname <name...>', 'names operators and agents reach this server by (Host header), besides loopback and the --listen host')
    .option(...STORE_OPTION)
    .action(async (opts: { dir: string; listen: string; caUrl: string; bundle: string; token?: string; hostname?: string[]; store?: string }) => {
      const { host, port } = parseListen(opts.listen);
      const token = opts.token ?? process.env.PALISADE_JOIN_TOKEN;
      if (!token) throw new CliError('a join token is required: --token TOKEN or PALISADE_JOIN_TOKEN', 2);
      let bundlePem: string;
      try {
        bundlePem = readFileSync(opts.bundle, 'utf8');
      } catch (err) {
        throw new CliError(`cannot read trust bundle ${opts.bundle}: ${(err as Error).message}`, 2);
      }
      const [{ startAgent }, { startControlServer }, { dashboard }] = await Promise.all([
        import('../agent/identity/agent.ts'), import('../control/server.ts'), import('../dashboard/routes.ts'),
      ]);
      await withStore(opts, async (store) => {
        const identity = await startAgent({ caUrl: opts.caUrl, bundlePem, token }).catch((err: Error) => {
          throw new CliError(`cannot obtain an SVID: ${err.message}`);
        });
        try {
          const server = await startControlServer({
            store, identity, host, port, hostnames: opts.hostname,
            plugins: [dashboard],
          }).catch((err: Error) => {
            throw new CliError(`cannot serve on ${opts.listen}: ${err.message}`);
          });
          process.stdout.write(`palisade control plane ${identity.svid().spiffeId} listening on ${server.url}\n`);
          await untilSignal();
          await server.close();
        } finally {
          identity.close();
        }
      });
    });
}

/** Opens the store (`--store`, else SQLite in DIR, which `init` must have created), applies migrations, runs `fn`, closes it. */
async function withStore<T>(opts: { dir: string; store?: string }, fn: (store: Store) => Promise<T>): Promise<T> {
  if (!existsSync(opts.dir)) throw new CliError(`no control plane state in ${opts.dir}: run palisade control init --dir ${opts.dir}`, 2);
  const [{ openStore }, { CONTROL_MIGRATIONS }] = await Promise.all([import('../store/open.ts'), import('../control/migrations.ts')]);
  let store: Store;
  try {
    store = await openStore(opts.store ?? path.join(opts.dir, 'control.db'));
    await store.migrate('control', CONTROL_MIGRATIONS);
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
