/**
 * WASI preview1 as Envoy provides it (under `wasi_snapshot_preview1` and `wasi_unstable`):
 * stdout/stderr become log lines, the clock and randomness work, everything that would reach
 * files, arguments or the environment finds nothing.
 */
import { randomFillSync } from 'node:crypto';
import { LogLevel } from './abi.ts';
import { concat } from './pairs.ts';
import type { HostContext, HostFunction } from './host-context.ts';
import { refuseIfRestricted } from './restricted.ts';

const WASI = { SUCCESS: 0, BADF: 8, FAULT: 21, NOSYS: 52, NOTSUP: 58 } as const;
const decoder = new TextDecoder();

/** Thrown by proc_exit: ends the current VM call like a trap. */
export class ProcExit extends Error {}

/** The WASI functions as linked under `module` (named in a restricted call's refusal). */
export const wasiImports = (host: HostContext, module: 'wasi_snapshot_preview1' | 'wasi_unstable'): Record<string, HostFunction> => {
  const mem = host.mem;
  return {
    fd_write: (fd: number, iovs: number, count: number, nwrittenPtr: number) => {
      if (fd !== 1 && fd !== 2) return WASI.BADF;
      const chunks: Uint8Array[] = [];
      for (let k = 0; k < count >>> 0; k++) {
        const iov = mem.read(iovs + k * 8, 8);
        if (!iov) return WASI.FAULT;
        const view = new DataView(iov.buffer, iov.byteOffset, 8);
        const data = mem.read(view.getUint32(0, true), view.getUint32(4, true));
        if (!data) return WASI.FAULT;
        chunks.push(data.slice());
      }
      const all = concat(...chunks);
      let text = decoder.decode(all);
      if (text.endsWith('\n')) text = text.slice(0, -1);
      const level = fd === 1 ? LogLevel.info : LogLevel.error;
      if (all.length > 0 && level >= host.logThreshold) host.emitLog(level, text, host.contextId());
      return mem.setU32(nwrittenPtr, all.length) ? WASI.SUCCESS : WASI.FAULT;
    },
    fd_read: () => (refuseIfRestricted(host, module, 'fd_read'), WASI.NOSYS),
    fd_seek: () => (refuseIfRestricted(host, module, 'fd_seek'), WASI.SUCCESS),
    fd_close: () => (refuseIfRestricted(host, module, 'fd_close'), WASI.SUCCESS),
    fd_fdstat_get: (fd: number, statPtr: number) => {
      refuseIfRestricted(host, module, 'fd_fdstat_get');
      if (fd !== 1 && fd !== 2) return WASI.BADF;
      if (!mem.read(statPtr, 24)) return WASI.FAULT;
      mem.view().fill(0, statPtr >>> 0, (statPtr >>> 0) + 24);
      mem.dv.setBigUint64((statPtr >>> 0) + 8, 64n, true); // rights: fd_write
      return WASI.SUCCESS;
    },
    fd_fdstat_set_flags: () => (refuseIfRestricted(host, module, 'fd_fdstat_set_flags'), WASI.NOSYS),
    // No preopened directories.
    fd_prestat_get: () => (refuseIfRestricted(host, module, 'fd_prestat_get'), WASI.BADF),
    fd_prestat_dir_name: () => (refuseIfRestricted(host, module, 'fd_prestat_dir_name'), WASI.NOSYS),
    path_open: () => (refuseIfRestricted(host, module, 'path_open'), WASI.NOSYS),
    environ_get: () => (refuseIfRestricted(host, module, 'environ_get'), WASI.SUCCESS),
    environ_sizes_get: (countPtr: number, sizePtr: number) => (refuseIfRestricted(host, module, 'environ_sizes_get'), mem.setU32(countPtr, 0) && mem.setU32(sizePtr, 0) ? WASI.SUCCESS : WASI.FAULT),
    args_get: () => (refuseIfRestricted(host, module, 'args_get'), WASI.SUCCESS),
    args_sizes_get: (countPtr: number, sizePtr: number) => (refuseIfRestricted(host, module, 'args_sizes_get'), mem.setU32(countPtr, 0) && mem.setU32(sizePtr, 0) ? WASI.SUCCESS : WASI.FAULT),
    clock_time_get: (id: number, _precision: bigint, ptr: number) => {
      if (id !== 0) return WASI.NOTSUP;
      return mem.setU64(ptr, host.options.clock()) ? WASI.SUCCESS : WASI.FAULT;
    },
    random_get: (ptr: number, len: number) => {
      refuseIfRestricted(host, module, 'random_get');
      const target = mem.read(ptr, len);
      if (!target) return WASI.FAULT;
      randomFillSync(target);
      return WASI.SUCCESS;
    },
    proc_exit: () => {
      refuseIfRestricted(host, module, 'proc_exit');
      throw new ProcExit('proc_exit');
    },
    sched_yield: () => (refuseIfRestricted(host, module, 'sched_yield'), WASI.SUCCESS),
    poll_oneoff: () => (refuseIfRestricted(host, module, 'poll_oneoff'), WASI.NOSYS),
  };
};
