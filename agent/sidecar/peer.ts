/**
 * The identity of a TLS peer after the chain verified against the trust bundle: the
 * certificate's single URI SAN, a valid SPIFFE ID in our trust domain (X.509-SVID §2).
 * Anything else is no identity at all.
 */
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { claimsCa, parseSpiffeId, uriSans } from '../../spiffe/pki.ts';

export class PeerIdentityError extends Error {}

export function spiffeIdOf(der: Uint8Array, trustDomain: string): string {
  let uris;
  try {
    const cert = new X509Certificate(der);
    if (cert.ca || claimsCa(Buffer.from(der))) throw new Error('is a CA');
    uris = uriSans(cert);
  } catch (err) {
    throw new PeerIdentityError(`peer certificate ${(err as Error).message}`);
  }
  if (uris.length !== 1) throw new PeerIdentityError(`peer certificate has ${uris.length} URI SANs, an SVID has exactly one`);
  let id;
  try {
    id = parseSpiffeId(uris[0]);
  } catch (err) {
    throw new PeerIdentityError((err as Error).message);
  }
  if (id.trustDomain !== trustDomain) throw new PeerIdentityError(`peer trust domain ${id.trustDomain} is not ${trustDomain}`);
  if (id.path === '') throw new PeerIdentityError('peer SPIFFE ID names a trust domain, not a workload');
  return id.id;
}

export function trustDomainOf(spiffeId: string): string {
  return parseSpiffeId(spiffeId).trustDomain;
}

/**
 * Mutual authentication for a `checkServerIdentity`: the server must be exactly the workload
 * expected (a route's target, the control plane); the error to refuse `cert` with, if any.
 */
export function serverIdentity(cert: PeerCertificate, expected: string, trustDomain: string): Error | undefined {
  try {
    const actual = spiffeIdOf(cert.raw, trustDomain);
    return actual === expected ? undefined : new Error(`server SPIFFE ID ${actual} is not the expected ${expected}`);
  } catch (err) {
    return new Error(`server certificate: ${(err as Error).message}`);
  }
}
