/**
 * `palisade agent` spends its one-time join token last: every flag is checked and every file
 * read (filter loaded and checked, routes, case file, JWKS, manifests, token file) before
 * it contacts the CA, so a typo exits 2 with one line and the same token still joins.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startCaServer, type CaServer } from '../../ca/server.ts';
import { startAgent } from '../../agent/identity/agent.ts';
import { initCa, palisadeRun, removeDir } from '../support/identity.ts';
import { CARD } from '../agent/sidecar/harness.ts';
import { compiled } from '../agent/sidecar/policies.ts';

let dir: string;
let ca: CaServer;

test.before(async () => {
  const caDir = await initCa();
  dir = path.dirname(caDir);
  ca = await startCaServer({ dir: caDir, port: 0 });
  await writeFile(path.join(dir, 'card.wasm'), await compiled('card'));
  await writeFile(path.join(dir, 'not.wasm'), 'this is not wasm');
  await writeFile(path.join(dir, 'routes.json'), JSON.stringify({ card: { url: 'https://127.0.0.1:1', spiffeId: CARD } }));
  await writeFile(path.join(dir, 'edge-routes.json'), JSON.stringify({ '/cards': { url: 'https://127.0.0.1:1', spiffeId: CARD } }));
});

test.after(async () => {
  await ca.close();
  removeDir(dir);
});

test('a typo in any flag or file costs nothing: exit 2, one line, and the same token still joins', async () => {
  const { token } = await ca.ca.createToken(CARD, 600_000);
  const file = (name: string) => path.join(dir, name);
  const base = ['agent', '--ca-url', ca.url, '--bundle', file('ca/bundle.pem'), '--token', token, '--join-attempts', '1'];
  const inbound = ['--inbound', '127.0.0.1:0', '--app', 'http://127.0.0.1:1'];
  const typos: [string, string[], RegExp][] = [
    ['a missing filter', [...inbound, '--filter', file('crad.wasm')], /crad\.wasm/],
    ['a filter that is not wasm', [...inbound, '--filter', file('not.wasm')], /^palisade: sidecar: /],
    ['a filter configuration the filter refuses', [...inbound, '--filter', file('card.wasm'), '--filter-config', '{"mode":'], /^palisade: sidecar: /],
    ['a missing case file', [...inbound, '--filter', file('card.wasm'), '--case-file', file('card.case.json')], /card\.case\.json/],
    ['a missing identity JWKS', [...inbound, '--filter', file('card.wasm'), '--identity-issuer', 'https://idp', '--identity-audience', 'card', '--identity-jwks', file('jwsk.json')], /jwsk\.json/],
    ['a missing routes file', ['--outbound', '127.0.0.1:0', '--routes', file('rutes.json')], /rutes\.json/],
    ['a non-loopback --outbound', ['--outbound', '0.0.0.0:0', '--routes', file('routes.json')], /--outbound-allow-remote/],
    ['a non-loopback --admin', ['--admin', '0.0.0.0:0'], /--admin must be a loopback address/],
    ['an admin token file in a missing directory', ['--admin', '127.0.0.1:0', '--admin-token-file', file('nope/token')], /admin token/],
    ['a missing ECDS manifest', ['--sds', `unix:${file('agent.sock')}`, '--ecds-policy', file('card.manifest.json')], /card\.manifest\.json/],
    ['an edge without its provider', ['--edge', '127.0.0.1:0', '--edge-routes', file('edge-routes.json')], /--oidc-issuer/],
    ['an edge whose provider does not answer discovery', ['--edge', '127.0.0.1:0', '--edge-routes', file('edge-routes.json'), '--oidc-issuer', 'http://127.0.0.1:1', '--oidc-audience', 'a'], /OpenID discovery/],
    ['an edge provider over plain http off loopback', ['--edge', '127.0.0.1:0', '--edge-routes', file('edge-routes.json'), '--oidc-issuer', 'http://login.example', '--oidc-audience', 'a'], /must be https/],
    ['a missing edge routes file', ['--edge', '127.0.0.1:0', '--edge-routes', file('edge-rutes.json'), '--oidc-issuer', 'https://login.example', '--oidc-audience', 'a'], /edge-rutes\.json/],
    ['an Envoy-mode edge without the agent socket', ['--edge-envoy', '--edge-routes', file('edge-routes.json'), '--oidc-issuer', 'https://login.example', '--oidc-audience', 'a'], /--edge-envoy needs --sds/],
    ['a mesh identity issuer without --inbound', ['--outbound', '127.0.0.1:0', '--routes', file('routes.json'), '--identity-issuer', CARD], /needs --inbound/],
    ['an invalid --fingerprint-ttl', ['--outbound', '127.0.0.1:0', '--routes', file('routes.json'), '--fingerprint-ttl', '0'], /--fingerprint-ttl/],
  ];
  for (const [what, flags, message] of typos) {
    const { code, output } = await palisadeRun([...base, ...flags]);
    assert.is(code, 2, `${what}: ${output}`);
    assert.match(output, /^palisade: [^\n]*\n$/, `${what}: one line, no stack trace: ${output}`);
    assert.match(output, message, what);
  }
  // Nothing above reached the CA: the token is still unused.
  const agent = await startAgent({ caUrl: ca.url, bundlePem: readFileSync(file('ca/bundle.pem'), 'utf8'), token });
  try {
    assert.is(agent.svid().spiffeId, CARD);
  } finally {
    agent.close();
  }
});

test.run();
