import { createHash, createPrivateKey, createPublicKey, KeyObject, randomBytes, sign, verify, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { ECDSA_P256, generateKeyPair, toPem, x509 } from '../identity/pki.ts';
import { bitString, boolean, children, explicit, implicit, octetString, oid, read, sequence, splitSigned, time, tlv, unsignedInteger } from './der.ts';
import { CaError } from './errors.ts';

const ECDSA_WITH_SHA256 = oid('1.2.840.10045.4.3.2');
const MAX_CSR_BYTES = 4096;

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
  private readonly authorityKeyId: Buffer;

  constructor(rootPem: string, keyPem: string) {
    this.rootPem = rootPem;
    this.root = new x509.X509Certificate(rootPem);
    this.key = createPrivateKey(keyPem);
    const tbs = children(read(Buffer.from(this.root.rawData)))[0]!;
    const fields = children(tbs); // [0]version, serial, algorithm, issuer, validity, subject, spki, [3]extensions
    this.issuerName = fields[5]!.raw; // the root's subject is every SVID's issuer
    this.authorityKeyId = keyIdentifier(fields[6]!.raw);
    const matches = createPublicKey(this.key).export({ format: 'der', type: 'spki' }).equals(fields[6]!.raw);
    if (!matches) throw new Error('CA key does not belong to the root certificate');
  }

  /** An X.509-SVID after the SPIFFE standard: one URI SAN, CA:false, digitalSignature, server+client auth. */
  signSvid(params: { serial: Buffer; spiffeId: string; spki: Buffer; notBefore: Date; notAfter: Date }): Buffer {
    const extensions = [
      extension('2.5.29.19', true, sequence()), // basicConstraints: CA false
      extension('2.5.29.15', true, tlv(0x03, Buffer.from([0x07, 0x80]))), // keyUsage: digitalSignature
      extension('2.5.29.37', false, sequence(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))),
      extension('2.5.29.17', true, sequence(implicit(6, Buffer.from(params.spiffeId)))), // critical: subject is empty
      extension('2.5.29.14', false, octetString(keyIdentifier(params.spki))),
      extension('2.5.29.35', false, sequence(implicit(0, this.authorityKeyId))),
    ];
    const tbs = sequence(
      explicit(0, unsignedInteger(Buffer.from([2]))),
      unsignedInteger(params.serial),
      sequence(ECDSA_WITH_SHA256),
      this.issuerName,
      sequence(time(params.notBefore), time(params.notAfter)),
      sequence(),
      params.spki,
      explicit(3, sequence(...extensions)),
    );
    return sequence(tbs, sequence(ECDSA_WITH_SHA256), bitString(sign('sha256', tbs, this.key)));
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
  /** DER SubjectPublicKeyInfo of the requested key (P-256). */
  spki: Buffer;
  /** URI SANs the requester asked for; the CA only accepts none or exactly its own choice. */
  requestedUris: string[];
}

/** Parses a PEM PKCS#10 request and verifies its self-signature; anything odd is a 400. */
export function verifyCsr(pem: unknown): VerifiedCsr {
  if (typeof pem !== 'string' || pem.length > MAX_CSR_BYTES) throw new CaError(400, 'invalid_csr', `csr must be a PEM string of at most ${MAX_CSR_BYTES} bytes`);
  let request: x509.Pkcs10CertificateRequest;
  let der: Buffer;
  try {
    request = new x509.Pkcs10CertificateRequest(pem);
    der = Buffer.from(request.rawData);
  } catch {
    throw new CaError(400, 'invalid_csr', 'csr is not a PEM-encoded PKCS#10 certification request');
  }
  const spki = Buffer.from(request.publicKey.rawData);
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    throw new CaError(400, 'invalid_csr', 'csr public key cannot be read');
  }
  if (request.publicKey.algorithm.name !== 'ECDSA' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new CaError(400, 'unsupported_key', 'only ECDSA P-256 keys are accepted');
  }
  let valid = false;
  try {
    const signed = splitSigned(der);
    valid = signed.algorithm.equals(ECDSA_WITH_SHA256) && verify('sha256', signed.tbs, key, signed.signature);
  } catch {
    valid = false; // malformed signature encoding: same answer as a wrong signature
  }
  if (!valid) {
    throw new CaError(400, 'csr_signature_invalid', 'csr signature does not verify (ecdsa-with-SHA256 required)');
  }
  const san = request.extensions.find((ext) => ext instanceof x509.SubjectAlternativeNameExtension);
  const requestedUris = san?.names.items.filter((name) => name.type === 'url').map((name) => name.value) ?? [];
  return { spki, requestedUris };
}
