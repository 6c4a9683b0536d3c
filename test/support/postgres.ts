/**
 * A private PostgreSQL cluster for one test file, from the server binaries Debian's
 * `postgresql` package installs (`/usr/lib/postgresql/<version>/bin`; PALISADE_POSTGRES_BIN
 * names another directory). initdb refuses to run as root, so as root the cluster runs as
 * the `postgres` user in a temporary directory it owns. It listens on 127.0.0.1 (a free
 * port) and a unix socket in that directory, trusts local connections, and is stopped and
 * removed by `stop()` (and, should the test process die first, on exit).
 *
 * Without server binaries `findPostgres()` prints one loud SKIPPED line and returns
 * undefined: the suite registers its tests with `skip`, and everything else runs.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './identity.ts';

export interface PostgresCluster {
  port: number;
  /** A new empty database; its `postgres://` URL. */
  createDatabase(): Promise<string>;
  /** Freezes every server process (SIGSTOP), as a hung VM or a network partition would: connections stay open, nothing answers. */
  pause(): void;
  /** Lets the frozen server run on (SIGCONT). */
  resume(): void;
  stop(): void;
}

/** The directory holding initdb and pg_ctl (newest version), or undefined after saying loudly that the suite skips. */
export function findPostgres(suite: string): string | undefined {
  const candidates = process.env.PALISADE_POSTGRES_BIN !== undefined
    ? [process.env.PALISADE_POSTGRES_BIN]
    : versions().map((v) => `/usr/lib/postgresql/${v}/bin`);
  const bin = candidates.find((dir) => existsSync(path.join(dir, 'initdb')) && existsSync(path.join(dir, 'pg_ctl')));
  if (!bin) {
    console.log(`\n*** SKIPPED: PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin; install Debian's postgresql package): ${suite} did not run ***\n`);
  }
  return bin;
}

function versions(): string[] {
  try {
    return readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  } catch {
    return [];
  }
}

export async function startPostgres(bin: string): Promise<PostgresCluster> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'palisade-pg-'));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chownSync(root, ...postgresUser());
  const data = path.join(root, 'data');
  const run = (tool: string, args: string[]) => {
    const command = asRoot ? ['runuser', ['-u', 'postgres', '--', path.join(bin, tool), ...args]] as const : [path.join(bin, tool), args] as const;
    const result = spawnSync(command[0], command[1], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`${tool} failed: ${result.stderr || result.stdout}`);
  };
  let port = 0;
  const stop = () => {
    process.off('exit', stop);
    try {
      run('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-s']);
    } catch {
      // never started, or already stopped
    }
    rmSync(root, { recursive: true, force: true });
  };
  process.on('exit', stop);
  try {
    run('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
    // A port free now may be taken before the server binds it (test files run in parallel
    // workers, each binding port 0 often): then the server says so and starts on another.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const log = path.join(root, `server-${attempt}.log`);
      const settings = `-c listen_addresses=127.0.0.1 -p ${port} -k ${root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`;
      try {
        run('pg_ctl', ['start', '-D', data, '-w', '-s', '-l', log, '-o', settings]);
        break;
      } catch (err) {
        if (attempt === 3 || !/could not bind|Address already in use/.test(readLog(log))) throw err;
      }
    }
  } catch (err) {
    stop();
    throw err;
  }
  let databases = 0;
  return {
    port,
    async createDatabase() {
      const name = `palisade_${process.pid}_${++databases}`;
      const admin = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    pause: () => signalServer(data, 'SIGSTOP'),
    resume: () => signalServer(data, 'SIGCONT'),
    stop,
  };
}

/** The postmaster (first line of postmaster.pid) and every process it forked. */
function signalServer(data: string, signal: NodeJS.Signals): void {
  const postmaster = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const children = spawnSync('pgrep', ['-P', String(postmaster)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
  for (const pid of [postmaster, ...children]) process.kill(pid, signal);
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function postgresUser(): [number, number] {
  return [Number(execFileSync('id', ['-u', 'postgres']).toString()), Number(execFileSync('id', ['-g', 'postgres']).toString())];
}
