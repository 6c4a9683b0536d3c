/** Host calls for logging and time: proxy_log, the log level, the clock and the tick timer. */
import { Status, LogLevel } from './abi.ts';
import type { ImportArea } from './host-context.ts';
import { refuseIfRestricted } from './restricted.ts';

export const loggingClockImports: ImportArea = (host) => {
  const mem = host.mem;
  return {
    proxy_log: (level: number, ptr: number, size: number) => {
      if (level >>> 0 > LogLevel.critical) return Status.BAD_ARGUMENT;
      if (level < host.logThreshold) return mem.inBounds(ptr, size) ? Status.OK : Status.INVALID_MEMORY_ACCESS; // dropped: not decoded
      const message = mem.readString(ptr, size);
      if (message === null) return Status.INVALID_MEMORY_ACCESS;
      host.emitLog(level, message, host.contextId());
      return Status.OK;
    },
    proxy_get_log_level: (ptr: number) => (refuseIfRestricted(host, 'env', 'proxy_get_log_level'), mem.setU32(ptr, host.logThreshold) ? Status.OK : Status.INVALID_MEMORY_ACCESS),
    proxy_get_current_time_nanoseconds: (ptr: number) => (refuseIfRestricted(host, 'env', 'proxy_get_current_time_nanoseconds'), mem.setU64(ptr, host.options.clock()) ? Status.OK : Status.INVALID_MEMORY_ACCESS),
    proxy_set_tick_period_milliseconds: (period: number) => {
      refuseIfRestricted(host, 'env', 'proxy_set_tick_period_milliseconds');
      host.setTickPeriod(period >>> 0);
      return Status.OK;
    },
  };
};
