/**
 * bench/sidecar.ts's application, in a process of its own: answers every request with the
 * same small JSON body and counts the requests each proxy forwarded (by the Host header the
 * caller sent it, which every proxy passes on), so the bench can hold the audit log's entry
 * count against an independent count. `GET /forwarded`, asked directly, answers the counts.
 * Prints its URL as its first line.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const forwarded = new Map<string, number>();
const server = createServer((req, res) => {
  if (req.url === '/forwarded') return res.end(JSON.stringify(Object.fromEntries(forwarded)));
  const host = req.headers.host ?? '';
  forwarded.set(host, (forwarded.get(host) ?? 0) + 1);
  res.end('{"id":"42"}');
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
