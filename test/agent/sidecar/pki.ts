/** Test PKI: a root CA and SVIDs for a trust domain, made with @peculiar/x509. */
import 'reflect-metadata';
import { webcrypto, createPrivateKey } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { Svid } from '../../../agent/sidecar/svid.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);
const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface TestCa {
  certPem: string;
  /** Crafted certificates: `names` replaces the SANs `spiffeId` and `extraUris` give, `ca` marks it a CA (`keyCertSign` as well, the usage OpenSSL's X509_check_ca also wants). */
  issue(spiffeId: string, opts?: { ttlSeconds?: number; extraUris?: string[]; names?: x509.JsonGeneralName[]; ca?: boolean; keyCertSign?: boolean }): Promise<Svid>;
}

async function keys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

export async function createCa(trustDomain: string): Promise<TestCa> {
  const caKeys = await keys();
  const now = Date.now();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=test root, O=${trustDomain}`,
    keys: caKeys,
    signingAlgorithm: alg,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  return {
    certPem: caCert.toString('pem'),
    async issue(spiffeId, opts = {}) {
      const leafKeys = await keys();
      const notAfter = new Date(Date.now() + (opts.ttlSeconds ?? 3600) * 1000);
      const names = opts.names ?? [spiffeId, ...(opts.extraUris ?? [])].map((value) => ({ type: 'url' as const, value }));
      const leaf = await x509.X509CertificateGenerator.create({
        subject: 'O=SPIRE',
        issuer: caCert.subject,
        publicKey: leafKeys.publicKey,
        signingKey: caKeys.privateKey,
        signingAlgorithm: alg,
        notBefore: new Date(Date.now() - 60_000),
        notAfter,
        extensions: [
          new x509.BasicConstraintsExtension(opts.ca ?? false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | (opts.keyCertSign ? x509.KeyUsageFlags.keyCertSign : 0), true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension(names),
          await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
        ],
      });
      return {
        spiffeId,
        chainPem: leaf.toString('pem'),
        privateKey: createPrivateKey(await pkcs8Pem(leafKeys.privateKey)),
        notAfter,
      };
    },
  };
}
