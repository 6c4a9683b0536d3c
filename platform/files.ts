/**
 * Files other processes read while we write them (Envoy's path_config_source and ECDS
 * watchers, an agent's --filter watcher, CI reading build/): written to a temporary name in
 * the same directory, then renamed over the target, so a reader sees the old file or the new
 * one, never half of either.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export function writeFileAtomic(file: string, data: Uint8Array | string, mode = 0o644): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, data, { mode });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
