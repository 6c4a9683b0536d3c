/** What every long-running `palisade` command shares: listen addresses and shutdown on a signal. */
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
