/**
 * Files other processes read while we write them (Envoy's path_config_source and ECDS
 * watchers, an agent's --filter watcher, CI reading build/): written to a temporary name in
 * the same directory, then renamed over the target, so a reader sees the old file or the new
 * one, never half of either.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

const tmpOf = (file: string) => path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);

export function writeFileAtomic(file: string, data: Uint8Array | string, mode = 0o644): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = tmpOf(file);
  try {
    writeFileSync(tmp, data, { mode });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** The same, in the threadpool: for a writer that must not hold up its event loop (the audit log's checkpoints). */
export async function writeFileAtomicAsync(file: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = tmpOf(file);
  try {
    await writeFile(tmp, data, { mode });
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
