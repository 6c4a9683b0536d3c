import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { createCsr, generateKeyPair, uriSans } from '../../spiffe/pki.ts';
import { x509 } from '../../spiffe/x509.ts';
import { createCa } from '../agent/sidecar/pki.ts';

const ID = 'spiffe://bank.example/ns/web/sa/frontend';

test('createCsr: a PKCS#10 request for the key, self-signed, naming nothing', async () => {
  const { privateKey } = await generateKeyPair();
  const csr = new x509.Pkcs10CertificateRequest(createCsr(privateKey));
  assert.ok(await csr.verify());
  assert.is(csr.subject, '');
  assert.is(csr.attributes.length, 0);
  const spki = (key: { export(o: { type: 'spki'; format: 'der' }): Buffer }) => key.export({ type: 'spki', format: 'der' });
  assert.ok(spki(createPublicKey(privateKey)).equals(Buffer.from(csr.publicKey.rawData)));
});

test('uriSans: the URI entries of a plain list, other names skipped', async () => {
  const ca = await createCa('bank.example');
  const plain = await ca.issue(ID, { names: [{ type: 'dns', value: 'frontend.local' }, { type: 'url', value: ID }, { type: 'ip', value: '127.0.0.1' }] });
  assert.equal(uriSans(new X509Certificate(plain.chainPem)), [ID]);
  const none = await ca.issue(ID, { names: [{ type: 'dns', value: 'frontend.local' }] });
  assert.equal(uriSans(new X509Certificate(none.chainPem)), []);
});

test('uriSans: a list node had to quote is refused, whatever the quoted name', async () => {
  const ca = await createCa('bank.example');
  for (const name of [
    { type: 'dns', value: `x, URI:${ID}, DNS:y` },
    { type: 'url', value: `${ID},x` },
    { type: 'url', value: `${ID}\u0007` },
  ] as x509.JsonGeneralName[]) {
    const cert = new X509Certificate((await ca.issue(ID, { names: [name] })).chainPem);
    assert.ok(cert.subjectAltName!.includes('"'), cert.subjectAltName);
    assert.throws(() => uriSans(cert), /needs quoting/);
  }
});

test.run();
