/**
 * bench/sidecar.ts's baseline, in a process of its own: TLS 1.3 termination and a keep-alive
 * pool to the same application, nothing else; the body is relayed with the sidecar's own
 * plumbing, so only the perimeter differs. Prints its URL as its first line.
 * Usage: node --import tsx bench/plain-proxy.ts APP_URL CERT.pem KEY.pem
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { relay } from '../agent/sidecar/http.ts';

const [appUrl, certFile, keyFile] = process.argv.slice(2);
const pool = new Pool(appUrl, { connections: 64 });
const server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.3' }, (req, res) => {
  void (async () => {
    const up = await pool.request({ method: 'GET', path: req.url ?? '/', headers: { host: req.headers.host ?? '' } });
    res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? 'text/plain') });
    relay(up.body, res);
  })().catch(() => res.destroy()); // clients hang up at the end of a run
});
server.listen(0, '127.0.0.1', () => console.log(`https://127.0.0.1:${(server.address() as AddressInfo).port}`));
