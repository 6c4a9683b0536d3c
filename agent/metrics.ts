/// <reference path="./prom-client-parts.d.ts" />
/**
 * The part of prom-client the agent uses (registries, counters, gauges), imported from the
 * files that define it rather than from prom-client's index, which also loads the cluster
 * aggregator (node's cluster, with its child_process and dgram parts), the Pushgateway
 * (http, https, zlib), the default process metrics (perf_hooks), histograms and summaries
 * with @opentelemetry/api and tdigest: ~0.6 MB of an idle agent's RSS (bench/startup.ts).
 * These are the classes the index exports (test/agent/metrics.test.ts checks it). Code
 * outside the agent process imports 'prom-client' itself.
 */
import Registry from 'prom-client/lib/registry.js';
import Counter from 'prom-client/lib/counter.js';
import Gauge from 'prom-client/lib/gauge.js';

/** prom-client's default registry (its index's `register`). */
const register = (Registry as unknown as { globalRegistry: Registry }).globalRegistry;

export { Registry, Counter, Gauge, register };
