/** What `palisade` commands share: listen addresses, shutdown on a signal, output files. */
import { writeFileAtomic } from '../platform/files.ts';
import { CliError } from './errors.ts';

export function parseListen(listen: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listen);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new CliError(`invalid address ${JSON.stringify(listen)}: expected HOST:PORT`, 2);
  return { host: match[1] ?? match[2]!, port };
}

/** Resolves on SIGINT/SIGTERM so servers can close cleanly; keeps the process alive until then. */
export function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const keepAlive = setInterval(() => {}, 1 << 30); // signal listeners alone do not hold the event loop
    const done = () => {
      clearInterval(keepAlive);
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}

/** Writes an output file that a watcher (Envoy, an agent) may be reading; failure is one CLI line. */
export function writeAtomically(file: string, data: Uint8Array | string): void {
  try {
    writeFileAtomic(file, data);
  } catch (err) {
    throw new CliError(`cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
