/** Host calls on metrics: counters, gauges, histograms with Envoy's statuses for misuse. */
import { Status, MetricType } from './abi.ts';
import type { ImportArea } from './host-context.ts';
import { refuseIfRestricted } from './restricted.ts';

export const metricImports: ImportArea = (host) => {
  const mem = host.mem;
  const metrics = host.metrics;
  return {
    proxy_define_metric: (type: number, np: number, ns: number, idPtr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_define_metric');
      const name = mem.readString(np, ns);
      if (name === null) return Status.INVALID_MEMORY_ACCESS;
      if (type >>> 0 > MetricType.HISTOGRAM) return Status.BAD_ARGUMENT;
      return mem.setU32(idPtr, metrics.define(type, name)) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
    proxy_increment_metric: (id: number, offset: bigint) => {
      refuseIfRestricted(host, 'env', 'proxy_increment_metric');
      const m = metrics.get(id);
      if (!m) return Status.NOT_FOUND;
      if (m.type === MetricType.HISTOGRAM || (m.type === MetricType.COUNTER && offset < 0n)) return Status.BAD_ARGUMENT;
      m.value += offset;
      return Status.OK;
    },
    proxy_record_metric: (id: number, value: bigint) => {
      refuseIfRestricted(host, 'env', 'proxy_record_metric');
      const m = metrics.get(id);
      if (!m) return Status.NOT_FOUND;
      const v = BigInt.asUintN(64, value);
      if (m.type === MetricType.COUNTER) m.value += v;
      else if (m.type === MetricType.GAUGE) m.value = v;
      else (m.count++, (m.sum += Number(v)));
      return Status.OK;
    },
    proxy_get_metric: (id: number, ptr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_get_metric');
      const m = metrics.get(id);
      if (!m) return Status.NOT_FOUND;
      if (m.type === MetricType.HISTOGRAM) return Status.BAD_ARGUMENT;
      return mem.setU64(ptr, BigInt.asUintN(64, m.value)) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
  };
};
