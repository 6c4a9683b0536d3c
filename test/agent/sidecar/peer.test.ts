import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { X509Certificate } from 'node:crypto';
import { PeerIdentityError, spiffeIdOf } from '../../../agent/sidecar/peer.ts';
import { createCa } from './pki.ts';

const ID = 'spiffe://bank.example/ns/web/sa/frontend';
const der = (pem: string) => new X509Certificate(pem).raw;

test('a peer certificate is its one URI SAN in the trust domain, other names aside', async () => {
  const ca = await createCa('bank.example');
  const svid = await ca.issue(ID, { names: [{ type: 'dns', value: 'frontend.local' }, { type: 'url', value: ID }] });
  assert.is(spiffeIdOf(der(svid.chainPem), 'bank.example'), ID);
});

test('no identity: a CA certificate, a DNS name spelling a URI SAN, a quoted URI, a trust domain alone', async () => {
  const ca = await createCa('bank.example');
  const refused: [string, Promise<{ chainPem: string }>, RegExp][] = [
    ['CA certificate', ca.issue(ID, { ca: true }), /is a CA/],
    ['CA certificate with keyCertSign', ca.issue(ID, { ca: true, keyCertSign: true }), /is a CA/],
    ['DNS name spelling a URI SAN', ca.issue(ID, { names: [{ type: 'dns', value: `x, URI:${ID}, DNS:y` }] }), /needs quoting/],
    ['URI SAN with a control byte', ca.issue(ID, { names: [{ type: 'url', value: `${ID}\u0007` }] }), /needs quoting/],
    ['trust domain only', ca.issue('spiffe://bank.example'), /not a workload/],
  ];
  for (const [name, issued, reason] of refused) {
    const cert = der((await issued).chainPem);
    assert.throws(() => spiffeIdOf(cert, 'bank.example'), (err: Error) => err instanceof PeerIdentityError && reason.test(err.message), name);
  }
});

test.run();
