/** The edge's routes file: longest prefix by whole segments, host-specific entries first, bad keys refused. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadEdgeRoutes, routeFor } from '../../../agent/edge/routes.ts';

const to = (name: string) => ({ url: 'https://127.0.0.1:1', spiffeId: `spiffe://bank.example/ns/x/sa/${name}` });

async function withRoutes(doc: unknown, run: (file: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'palisade-edge-routes-'));
  try {
    await writeFile(join(dir, 'routes.json'), JSON.stringify(doc));
    await run(join(dir, 'routes.json'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('longest prefix wins, by whole segments; a host-specific entry beats a host-less one', async () => {
  await withRoutes({ '/': to('root'), '/cards': to('cards'), '/cards/admin': to('admin'), 'ops.bank.example/cards': to('ops') }, async (file) => {
    const routes = await loadEdgeRoutes(file);
    const target = (host: string, path: string) => routeFor(routes, host, path)?.spiffeId.split('/').at(-1);
    assert.is(target('api', '/cards'), 'cards');
    assert.is(target('api', '/cards/42'), 'cards');
    assert.is(target('api', '/cardsX'), 'root');
    assert.is(target('api', '/cards/admin/1'), 'admin');
    assert.is(target('api', '/cards/administrator'), 'cards');
    assert.is(target('ops.bank.example', '/cards/42'), 'ops');
    assert.is(target('ops.bank.example', '/cards/admin'), 'admin');
  });
  await withRoutes({ '/cards': to('cards') }, async (file) => assert.is(routeFor(await loadEdgeRoutes(file), 'api', '/balances'), undefined));
});

test('keys that are not prefixes, dot segments and bad targets are refused with the file and the key', async () => {
  for (const [doc, message] of [
    [{ cards: to('cards') }, /route "cards" must be a path prefix/],
    [{ '/cards/../admin': to('cards') }, /without dot segments/],
    [{ '/cards': { url: 'http://127.0.0.1:1', spiffeId: 'spiffe://bank.example/ns/x/sa/y' } }, /"\/cards" needs "url" \(https/],
    [{}, /no routes/],
  ] as const) {
    await withRoutes(doc, async (file) => {
      const err = await loadEdgeRoutes(file).catch((e: Error) => e);
      assert.instance(err, Error);
      assert.match((err as Error).message, message);
      assert.ok((err as Error).message.startsWith(file), (err as Error).message);
    });
  }
});

test.run();
