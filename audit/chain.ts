/**
 * Offline X.509 checks for the audit verifier: a certificate chain (leaf first) that leads
 * to a root of the trust bundle and was valid at a given moment, and the SVID's one SPIFFE
 * ID. Evidence is judged at the time it was made, so a log outlives the SVIDs that wrote it.
 */
import { X509Certificate } from 'node:crypto';
import { pemBlocks } from '../spiffe/pem.ts';

export class ChainError extends Error {}

/** Returns the leaf of `chainPem` after checking the chain to `bundle` at `at`; throws ChainError with the reason. */
export function verifyChainAt(chainPem: string, bundle: X509Certificate[], at: Date): X509Certificate {
  const chain = pemBlocks(chainPem).map((pem) => new X509Certificate(pem));
  if (chain.length === 0) throw new ChainError('no certificate');
  for (const cert of chain) {
    if (at < new Date(cert.validFrom) || at > new Date(cert.validTo)) {
      throw new ChainError(`certificate ${cert.serialNumber} was not valid at ${at.toISOString()} (valid ${new Date(cert.validFrom).toISOString()} to ${new Date(cert.validTo).toISOString()})`);
    }
  }
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!issued(chain[i]!, chain[i + 1]!)) throw new ChainError(`certificate ${chain[i]!.serialNumber} is not issued by the next one in its chain`);
  }
  const last = chain.at(-1)!;
  if (!bundle.some((root) => issued(last, root))) throw new ChainError(`certificate ${last.serialNumber} is not issued by the trust bundle`);
  return chain[0]!;
}

function issued(cert: X509Certificate, by: X509Certificate): boolean {
  return cert.checkIssued(by) && cert.verify(by.publicKey);
}

/** The SVID's SPIFFE ID: its one URI SAN. */
export function spiffeIdOfCert(cert: X509Certificate): string | null {
  const sans = (cert.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('URI:'));
  return sans.length === 1 ? sans[0]!.slice(4) : null;
}

export function loadBundle(pem: string): X509Certificate[] {
  const roots = pemBlocks(pem).map((block) => new X509Certificate(block));
  if (roots.length === 0) throw new ChainError('the trust bundle holds no PEM certificate');
  return roots;
}
