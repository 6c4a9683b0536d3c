/**
 * The CA directory holds the root key and the state store: a directory or file that another
 * user can write lets that user swap the key, the trust bundle or the token table. Like
 * OpenSSH with ~/.ssh, the CA refuses to use such a directory rather than trust it.
 */
import { lstatSync, readdirSync, type Stats } from 'node:fs';
import path from 'node:path';

/** Bad input by the operator (exit 2 from the CLI), fixed by the command its message names. */
export class UnsafeCaDirectoryError extends Error {}

/** Throws a one-line error naming the fix when `dir` or an entry in it is not the owner's alone to write. */
export function checkCaDirectory(dir: string): void {
  check(dir, lstatSync(dir), 'CA directory');
  for (const name of readdirSync(dir)) check(path.join(dir, name), lstatSync(path.join(dir, name)), 'CA file');
}

function check(file: string, stats: Stats, what: string): void {
  const uid = process.getuid?.();
  if (uid !== undefined && stats.uid !== uid && stats.uid !== 0) {
    throw new UnsafeCaDirectoryError(`${what} ${file} is owned by another user (uid ${stats.uid}); refusing to use it: run: chown ${uid} ${file}`);
  }
  const mode = stats.mode & 0o777;
  if (mode & 0o022) {
    throw new UnsafeCaDirectoryError(`${what} ${file} is writable by group or others (mode ${mode.toString(8)}); refusing to use it: run: chmod go-w ${file}`);
  }
}
