import { createHash, createPrivateKey, createPublicKey, KeyObject, randomBytes, sign, verify, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { ECDSA_P256, generateKeyPair, toPem, type EcJwk } from '../spiffe/pki.ts';
import { x509 } from '../spiffe/x509.ts';
import { bitString, boolean, children, ECDSA_WITH_SHA256, explicit, implicit, octetString, oid, read, sequence, splitSigned, time, tlv, unsignedInteger, type Element } from '../spiffe/der.ts';
import { CaError } from './errors.ts';

const MAX_CSR_BYTES = 4096;
const SIGNATURE_ALGORITHM = sequence(ECDSA_WITH_SHA256);
const V3 = explicit(0, unsignedInteger(Buffer.from([2])));
const EMPTY_NAME = sequence();
/** Identical in every SVID: basicConstraints CA:false, keyUsage digitalSignature (both critical), EKU server+client auth. */
const SVID_FIXED_EXTENSIONS = Buffer.concat([
  extension('2.5.29.19', true, sequence()),
  extension('2.5.29.15', true, tlv(0x03, Buffer.from([0x07, 0x80]))),
  extension('2.5.29.37', false, sequence(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))),
]);

/** The CA's root: a self-signed P-256 certificate for the trust domain. */
export async function createRoot(trustDomain: string, years = 5): Promise<{ certPem: string; keyPem: string }> {
  const { keys, privateKey } = await generateKeyPair();
  const notBefore = new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial().toString('hex'),
    name: `O=Palisade, CN=${trustDomain} root`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + years * 365 * 86_400_000),
    keys,
    signingAlgorithm: ECDSA_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: toPem(Buffer.from(cert.rawData)), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/** 128 random bits, high bit clear so the INTEGER stays positive and 16 bytes long. */
export function randomSerial(): Buffer {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  return serial;
}

/** Signs certificates with the root key; the SVID path is a template fill plus one native signature. */
export class Issuer {
  readonly rootPem: string;
  readonly root: x509.X509Certificate;
  private readonly key: KeyObject;
  private readonly issuerName: Buffer;
  private readonly authorityKeyIdExtension: Buffer;

  constructor(rootPem: string, keyPem: string) {
    this.rootPem = rootPem;
    this.root = new x509.X509Certificate(rootPem);
    this.key = createPrivateKey(keyPem);
    const tbs = children(read(Buffer.from(this.root.rawData)))[0]!;
    const fields = children(tbs); // [0]version, serial, algorithm, issuer, validity, subject, spki, [3]extensions
    this.issuerName = fields[5]!.raw; // the root's subject is every SVID's issuer
    this.authorityKeyIdExtension = extension('2.5.29.35', false, sequence(implicit(0, keyIdentifier(fields[6]!.raw))));
    const matches = createPublicKey(this.key).export({ format: 'der', type: 'spki' }).equals(fields[6]!.raw);
    if (!matches) throw new Error('CA key does not belong to the root certificate');
  }

  /** An X.509-SVID after the SPIFFE standard: one URI SAN, CA:false, digitalSignature, server+client auth. */
  signSvid(params: { serial: Buffer; spiffeId: string; spki: Buffer; notBefore: Date; notAfter: Date }): Buffer {
    const extensions = [
      SVID_FIXED_EXTENSIONS,
      extension('2.5.29.17', true, sequence(implicit(6, Buffer.from(params.spiffeId)))), // critical: the subject is empty
      extension('2.5.29.14', false, octetString(keyIdentifier(params.spki))),
      this.authorityKeyIdExtension,
    ];
    const tbs = sequence(
      V3,
      unsignedInteger(params.serial),
      SIGNATURE_ALGORITHM,
      this.issuerName,
      sequence(time(params.notBefore), time(params.notAfter)),
      EMPTY_NAME,
      params.spki,
      explicit(3, sequence(...extensions)),
    );
    return sequence(tbs, SIGNATURE_ALGORITHM, bitString(sign('sha256', tbs, this.key)));
  }

  /** The CA's own HTTPS certificate, issued by itself for the names clients dial. */
  async signServerCert(hosts: string[], ttlMs: number): Promise<{ certPem: string; keyPem: string }> {
    const { keys, privateKey } = await generateKeyPair();
    const signingKey = await webcrypto.subtle.importKey('pkcs8', this.key.export({ type: 'pkcs8', format: 'der' }), ECDSA_P256, false, ['sign']);
    const notBefore = new Date(Date.now() - 60_000);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial().toString('hex'),
      subject: 'O=Palisade, CN=palisade-ca',
      issuer: this.root.subject,
      notBefore,
      notAfter: new Date(notBefore.getTime() + ttlMs),
      publicKey: keys.publicKey,
      signingKey: signingKey as unknown as CryptoKey,
      signingAlgorithm: ECDSA_P256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(hosts.map((host) => ({ type: isIP(host) ? ('ip' as const) : ('dns' as const), value: host }))),
      ],
    });
    return { certPem: toPem(Buffer.from(cert.rawData)) + this.rootPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
  }
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return sequence(oid(id), ...(critical ? [boolean(true)] : []), octetString(value));
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
function keyIdentifier(spki: Buffer): Buffer {
  const publicKeyBits = children(read(spki))[1]!.content.subarray(1);
  return createHash('sha1').update(publicKeyBits).digest();
}

export interface VerifiedCsr {
  /** DER SubjectPublicKeyInfo of the requested key (P-256, uncompressed point). */
  spki: Buffer;
  /** The key's public JWK coordinates, read from the point. */
  jwk: EcJwk;
  /** URI SANs the requester asked for; the CA only accepts none or exactly its own choice. */
  requestedUris: string[];
}

const PEM_CSR = /^\s*-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END (?:NEW )?CERTIFICATE REQUEST-----\s*$/;
const P256_SPKI_ALGORITHM = sequence(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7')); // id-ecPublicKey, prime256v1
const EXTENSION_REQUEST = oid('1.2.840.113549.1.9.14');
const SUBJECT_ALT_NAME = oid('2.5.29.17');

/**
 * Parses a PEM PKCS#10 request and verifies its self-signature with the key it carries;
 * anything odd is a 400. Read with the DER reader rather than a general ASN.1 library:
 * this runs once per issuance and dominated its cost.
 */
export function verifyCsr(pem: unknown): VerifiedCsr {
  if (typeof pem !== 'string' || pem.length > MAX_CSR_BYTES) throw new CaError(400, 'invalid_csr', `csr must be a PEM string of at most ${MAX_CSR_BYTES} bytes`);
  const body = PEM_CSR.exec(pem)?.[1];
  if (!body) throw new CaError(400, 'invalid_csr', 'csr is not a PEM-encoded PKCS#10 certification request');
  let signed: ReturnType<typeof splitSigned>;
  let info: Element[];
  try {
    signed = splitSigned(Buffer.from(body, 'base64'));
    info = children(read(signed.tbs)); // version, subject, subjectPKInfo, [0] attributes
    if (info.length !== 4 || info[2]!.tag !== 0x30 || info[3]!.tag !== 0xa0) throw new Error('shape');
  } catch {
    throw new CaError(400, 'invalid_csr', 'csr is not a well-formed PKCS#10 certification request');
  }
  const spki = info[2]!.raw;
  const spkiParts = children(info[2]!);
  const point = spkiParts[1]?.content;
  if (!spkiParts[0]!.raw.equals(P256_SPKI_ALGORITHM) || !point || point.length !== 66 || point[0] !== 0 || point[1] !== 0x04) {
    throw new CaError(400, 'unsupported_key', 'only ECDSA P-256 keys (uncompressed) are accepted');
  }
  const jwk: EcJwk = { kty: 'EC', crv: 'P-256', x: point.subarray(2, 34).toString('base64url'), y: point.subarray(34).toString('base64url') };
  let valid = false;
  try {
    // Imported from the coordinates (checked to be on the curve): twice as fast as parsing the SPKI again.
    const key = createPublicKey({ key: { ...jwk }, format: 'jwk' });
    valid = signed.algorithm.equals(ECDSA_WITH_SHA256) && verify('sha256', signed.tbs, key, signed.signature);
  } catch {
    valid = false; // a point off the curve or a malformed signature: same answer as a wrong signature
  }
  if (!valid) throw new CaError(400, 'csr_signature_invalid', 'csr signature does not verify (ecdsa-with-SHA256 required)');
  return { spki, jwk, requestedUris: requestedUris(info[3]!) };
}

/** URI names in a subjectAltName extension request, if the CSR carries one. */
function requestedUris(attributes: Element): string[] {
  try {
    for (const attribute of children(attributes)) {
      const [type, values] = children(attribute);
      if (!type!.raw.equals(EXTENSION_REQUEST)) continue;
      for (const ext of children(children(values!)[0]!)) {
        const parts = children(ext);
        if (!parts[0]!.raw.equals(SUBJECT_ALT_NAME)) continue;
        const names = children(read(parts[parts.length - 1]!.content));
        return names.filter((name) => name.tag === 0x86).map((name) => name.content.toString('latin1'));
      }
    }
    return [];
  } catch {
    throw new CaError(400, 'invalid_csr', 'csr attributes are malformed');
  }
}
