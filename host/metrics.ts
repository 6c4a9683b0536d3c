/** The metrics a module defines (proxy_define_metric), by id, as Envoy keeps them per VM. */
import { MetricType } from './abi.ts';

interface Metric {
  name: string;
  type: number;
  value: bigint;
  count: number;
  sum: number;
}

export type MetricsSnapshot = Record<string, { type: 'counter' | 'gauge' | 'histogram'; value: number; count?: number; sum?: number }>;

export class Metrics {
  private readonly all: Metric[] = [];
  private readonly ids = new Map<string, number>();

  /** The id of `name` of `type` (defining it the first time): ids start at 1. */
  define(type: number, name: string): number {
    let id = this.ids.get(`${type}\0${name}`);
    if (id === undefined) {
      id = this.all.push({ name, type, value: 0n, count: 0, sum: 0 });
      this.ids.set(`${type}\0${name}`, id);
    }
    return id;
  }

  get(id: number): Metric | undefined {
    return this.all[(id >>> 0) - 1];
  }

  /** By the name the module defined, each with `prefix` before it. */
  snapshot(prefix: string): MetricsSnapshot {
    const out: MetricsSnapshot = {};
    for (const m of this.all) {
      const name = prefix + m.name;
      if (m.type === MetricType.HISTOGRAM) out[name] = { type: 'histogram', value: m.sum, count: m.count, sum: m.sum };
      else out[name] = { type: m.type === MetricType.COUNTER ? 'counter' : 'gauge', value: Number(m.value) };
    }
    return out;
  }
}
