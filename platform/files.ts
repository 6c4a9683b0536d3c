/**
 * Files other processes read while we write them (Envoy's path_config_source and ECDS
 * watchers, an agent's --filter watcher, CI reading build/): written to a temporary name in
 * the same directory, then renamed over the target, so a reader sees the old file or the new
 * one, never half of either.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

export function writeFileAtomic(file: string, data: Uint8Array | string, mode = 0o644): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = tmpFileOf(file);
  try {
    writeFileSync(tmp, data, { mode });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * The same off the event loop, into a folder that exists: creating a file waits for the file
 * system's journal, which another process's fsync can hold for milliseconds, and a server's
 * loop (the audit log's checkpoints under load) should not wait with it.
 */
export async function writeFileAtomicAsync(file: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  const tmp = tmpFileOf(file);
  try {
    await writeFile(tmp, data, { mode });
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

const tmpFileOf = (file: string) => path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
