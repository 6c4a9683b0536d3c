/**
 * Writing files that hold secrets (private keys, the admin token) on a machine other users
 * share: never through a symlink someone planted, never into a file someone else opened
 * first, and never readable by others, whatever the umask.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';

const EXCLUSIVE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

export interface SecretFileOptions {
  /**
   * Replace an existing file (e.g. `--force`): the secret goes to a new file beside it,
   * which is then renamed over it, so whatever was there (a symlink included) is replaced,
   * never written through, and readers see the old or the new secret, never half of one.
   */
  replace?: boolean;
}

/** Creates `file` with `data`, mode 0600; refuses an existing file unless `replace`. */
export function writeSecretFile(file: string, data: string | Uint8Array, options: SecretFileOptions = {}): void {
  if (!options.replace) {
    writeExclusive(file, data, `${file} already exists; refusing to overwrite it`);
    return;
  }
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  writeExclusive(tmp, data, `${tmp} appeared while writing`);
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

function writeExclusive(file: string, data: string | Uint8Array, ifExists: string): void {
  let fd: number;
  try {
    fd = openSync(file, EXCLUSIVE, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(ifExists);
    throw err;
  }
  try {
    fchmodSync(fd, 0o600); // the umask may have taken bits away; it never adds any, but be exact
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(file, { force: true });
    throw err;
  }
  closeSync(fd);
}
