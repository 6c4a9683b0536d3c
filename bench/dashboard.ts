/**
 * The Security Pane's aggregation at the scale: 500 services and 50,000 decisions in
 * the window. Prints how long feeding, the graph and a filtered page take, and the size of
 * each answer (what the browser receives: the graph is one edge per pair, a page ≤ 200 rows).
 */
import { performance } from 'node:perf_hooks';
import { DecisionWindow } from '../dashboard/window.ts';
import { feed, serviceId } from '../dashboard/load.ts';

const SERVICES = 500, DECISIONS = 50_000;
const time = <T>(fn: () => T): [T, number] => {
  const start = performance.now();
  const result = fn();
  return [result, performance.now() - start];
};
const kib = (value: unknown) => (Buffer.byteLength(JSON.stringify(value)) / 1024).toFixed(1);

const window = new DecisionWindow();
const [, fed] = time(() => feed(window, SERVICES, DECISIONS));
const rounds = 20;
const [edges, graphMs] = time(() => {
  let e = window.edges(0);
  for (let i = 1; i < rounds; i++) e = window.edges(0);
  return e;
});
const [page, listMs] = time(() => {
  let p = window.list({ decision: 'denied' }, 200);
  for (let i = 1; i < rounds; i++) p = window.list({ decision: 'denied' }, 200);
  return p;
});
const [one, serviceMs] = time(() => window.list({ service: serviceId(7), decision: 'deny' }, 50));
const rss = process.memoryUsage().rss / 2 ** 20;
console.log(`dashboard: ${SERVICES} services, ${DECISIONS.toLocaleString('en')} decisions in the window`);
console.log(`  feed ${(DECISIONS / fed * 1000).toFixed(0)} decisions/s (${fed.toFixed(1)} ms)`);
console.log(`  graph: ${edges.length} edges, ${(graphMs / rounds).toFixed(1)} ms, ${kib(edges)} KiB of JSON`);
console.log(`  decisions page (denied, 200 rows of ${window.size}): ${(listMs / rounds).toFixed(1)} ms, ${kib(page)} KiB; one service's page: ${serviceMs.toFixed(2)} ms, ${one.length} rows`);
console.log(`  process RSS ${rss.toFixed(1)} MiB`);
