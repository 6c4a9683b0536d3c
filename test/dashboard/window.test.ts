/** The decision window's bounds at the scale: memory and every answer stay bounded whatever agents send. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DecisionWindow, PAGE_MAX, verdictOf } from '../../dashboard/window.ts';
import { feed, serviceId } from '../../dashboard/load.ts';

const json = (v: unknown) => Buffer.byteLength(JSON.stringify(v));

test('500 services and 50,000 decisions: one edge per pair, pages of at most 200, answers under 128 KiB', () => {
  const window = new DecisionWindow();
  feed(window, 500, 50_000);
  assert.is(window.size, 50_000);
  const edges = window.edges(0);
  assert.is(edges.length, 500);
  assert.is(edges.reduce((n, e) => n + e.allowed + e.denied + e.dry_run_denied, 0), 50_000);
  assert.ok(json(edges) < 128 * 1024, `graph ${json(edges)} bytes`);
  const page = window.list({ decision: 'denied' }, 1_000);
  assert.is(page.length, PAGE_MAX);
  assert.ok(page.every((d) => verdictOf(d) === 'denied'));
  assert.ok(page.every((d, i) => i === 0 || d.id < page[i - 1]!.id), 'newest first');
  assert.ok(json(page) < 128 * 1024, `page ${json(page)} bytes`);
  const next = window.list({ decision: 'denied', before: page.at(-1)!.id }, 200);
  assert.ok(next[0]!.id < page.at(-1)!.id, 'the next page continues where the first ended');
});

test('a service keeps at most perService decisions, and services beyond the bound are dropped and counted', () => {
  const window = new DecisionWindow(100, 10);
  feed(window, 20, 10_000);
  assert.is(window.size, 10 * 100);
  assert.is(window.dropped, 5_000);
  assert.is(window.list({ service: serviceId(3) }, 200).length, 100);
  // The oldest went first: what is kept is the newest.
  assert.ok(window.list({ service: serviceId(3) }, 1)[0]!.path.endsWith(`/${10_000 - 20 + 3}`));
});

test('the graph window counts only decisions received since its start', () => {
  let now = 1_000;
  const window = new DecisionWindow(1_000, 10, () => now);
  feed(window, 2, 10);
  now = 60_000;
  feed(window, 2, 4);
  assert.is(window.edges(30_000).reduce((n, e) => n + e.allowed + e.denied + e.dry_run_denied, 0), 4);
});

test.run();
