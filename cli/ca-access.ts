/**
 * How `ca` commands reach the CA: its module (store, X.509) loads only when a `ca` command
 * runs, and any library failure becomes one CLI line (exit 2 for bad input).
 */
import type { CertificateAuthority } from '../ca/ca.ts';
import { CaError } from '../ca/errors.ts';
import { UnsafeCaDirectoryError } from '../ca/permissions.ts';
import { StoreSpecError } from '../store/open.ts';
import { CliError } from './errors.ts';

export const authority = () => import('../ca/ca.ts');

/** Turns a library failure into a one-line CLI error (exit 2 for bad input). */
export async function guard<T>(run: () => Promise<T> | T, exitCode = 1): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof CliError) throw err;
    const badInput = (err instanceof CaError && err.status < 500) || err instanceof UnsafeCaDirectoryError || err instanceof StoreSpecError;
    const code = badInput ? 2 : exitCode;
    throw new CliError((err as Error).message, code);
  }
}

/** `--store`, on every command that reads or writes the CA's state. */
export const STORE_OPTION = ['--store <spec>', 'state store: postgres://… shared by replicas (default: the SQLite file in --dir)'] as const;

export async function withCa<T>(opts: { dir: string; store?: string }, run: (ca: CertificateAuthority) => Promise<T> | T): Promise<T> {
  const { CertificateAuthority } = await authority();
  const ca = await guard(() => CertificateAuthority.open(opts.dir, { store: opts.store }));
  try {
    return await guard(() => run(ca));
  } finally {
    await ca.close();
  }
}
