import { createHash, createPublicKey, KeyObject, sign, webcrypto, type X509Certificate } from 'node:crypto';
import { bitString, children, ECDSA_WITH_SHA256, explicit, oid, read, sequence, unsignedInteger } from './der.ts';

/** Shared X.509 and SPIFFE vocabulary of the CA and the agent, on node:crypto alone (@peculiar/x509: x509.ts). */
export const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

const BASIC_CONSTRAINTS = oid('2.5.29.19');

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

/**
 * PKCS#10 request (RFC 2986) for a P-256 key, naming nothing: the CA decides the identity.
 * Version 0, an empty subject, the key, no attributes, signed ecdsa-with-SHA256.
 */
export function createCsr(privateKey: KeyObject): string {
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const info = sequence(unsignedInteger(Buffer.from([0])), sequence(), spki, explicit(0, Buffer.alloc(0)));
  return toPem(sequence(info, sequence(ECDSA_WITH_SHA256), bitString(sign('sha256', info, privateKey))), 'CERTIFICATE REQUEST');
}

export function pemBlocks(text: string, label = 'CERTIFICATE'): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[A-Za-z0-9+/=\\s]+?-----END ${label}-----`, 'g');
  return (text.match(re) ?? []).map((block) => `${block}\n`);
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

/**
 * The URI SANs of a certificate, from node's `subjectAltName`: `TYPE:value` entries joined
 * by ", ". Node JSON-quotes a value holding a comma, a quote, a backslash or a byte outside
 * printable ASCII and escapes those inside the quotes (`DNS:"x\u002c URI:…"`), so the list
 * splits exactly; a quoted value would still have to be unescaped to be read. No SVID needs
 * quoting (a SPIFFE ID is printable ASCII without those), so a list with any quoted name is
 * refused instead.
 */
export function uriSans(cert: X509Certificate): string[] {
  const names = cert.subjectAltName;
  if (names === undefined) return [];
  if (names.includes('"')) throw new Error('has a subject alternative name that needs quoting');
  return names.split(', ').filter((name) => name.startsWith('URI:')).map((name) => name.slice('URI:'.length));
}

/**
 * Whether a certificate's basicConstraints extension says cA. Node's `X509Certificate.ca`
 * is OpenSSL's X509_check_ca, which also wants the keyCertSign key usage: a certificate with
 * cA set and only digitalSignature reads false there, and an SVID must not be a CA at all.
 * Throws on DER it cannot read.
 */
export function claimsCa(der: Buffer): boolean {
  const tbs = children(read(der))[0]!;
  const extensions = children(tbs).find((field) => field.tag === 0xa3); // [3] EXPLICIT Extensions
  for (const extension of extensions ? children(children(extensions)[0]!) : []) {
    const [id, ...rest] = children(extension); // extnID, critical?, extnValue
    if (!id!.raw.equals(BASIC_CONSTRAINTS)) continue;
    const cA = children(read(rest.at(-1)!.content))[0]; // BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, … }
    return cA?.tag === 0x01 && cA.content[0] !== 0;
  }
  return false;
}
