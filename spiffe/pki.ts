import 'reflect-metadata'; // @peculiar/x509 (through tsyringe) needs the Reflect metadata API at load time
import { createHash, KeyObject, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
// Here too for its callers; its own module keeps @peculiar/x509 out of what needs PEM parsing only (audit/chain.ts).
export { pemBlocks } from './pem.ts';

/** Shared X.509 and SPIFFE vocabulary of the CA and the agent. */
x509.cryptoProvider.set(webcrypto as unknown as Crypto);
export { x509 };

export const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface SpiffeId {
  id: string;
  trustDomain: string;
  path: string;
}

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Parses a SPIFFE ID strictly after the SPIFFE ID standard (§2); throws with the reason. */
export function parseSpiffeId(id: string): SpiffeId {
  if (id.length > 2048) throw new Error('SPIFFE ID longer than 2048 bytes');
  if (!id.startsWith('spiffe://')) throw new Error(`SPIFFE ID must start with spiffe:// (got ${JSON.stringify(id)})`);
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (!TRUST_DOMAIN.test(trustDomain)) throw new Error(`invalid trust domain ${JSON.stringify(trustDomain)}: lowercase letters, digits, '.', '-', '_'`);
  if (path !== '') {
    for (const segment of path.slice(1).split('/')) {
      if (!SEGMENT.test(segment) || segment === '.' || segment === '..') {
        throw new Error(`invalid SPIFFE ID path ${JSON.stringify(path)}: non-empty segments of letters, digits, '.', '-', '_'`);
      }
    }
  }
  return { id, trustDomain, path };
}

export function parseTrustDomain(td: string): string {
  if (!TRUST_DOMAIN.test(td)) throw new Error(`invalid trust domain ${JSON.stringify(td)}: lowercase letters, digits, '.', '-', '_'`);
  return td;
}

/** A fresh in-memory P-256 key pair: the CryptoKeys for @peculiar/x509 and a KeyObject for TLS and JOSE. */
export async function generateKeyPair(): Promise<{ keys: CryptoKeyPair; privateKey: KeyObject }> {
  const keys = (await webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  return { keys, privateKey: KeyObject.from(keys.privateKey as unknown as webcrypto.CryptoKey) };
}

/** PKCS#10 request for a key; the CA decides the identity, so the request names none. */
export async function createCsr(keys: CryptoKeyPair): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: ECDSA_P256 });
  return csr.toString('pem');
}

export function toPem(der: Buffer, label = 'CERTIFICATE'): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export interface EcJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) of an EC public key: a stable key id. */
export function jwkThumbprint(jwk: EcJwk): string {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash('sha256').update(canonical).digest('base64url');
}

/** The one URI SAN of an X.509-SVID, or null when the certificate has none or several. */
export function svidSpiffeId(cert: x509.X509Certificate): string | null {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = san?.names.items.filter((name) => name.type === 'url').map((name) => name.value) ?? [];
  return uris.length === 1 ? uris[0]! : null;
}
