/**
 * What the inbound side checks on every request rather than once per connection: a
 * connection outlives its certificate's validity and any revocation, and a resumed TLS
 * session carries the verification result of the handshake it resumes (OpenSSL does not
 * verify the certificate again), so neither may be taken from the handshake.
 */
import type { X509Certificate } from 'node:crypto';
import type { LiveKeys } from '../identity/live-keys.ts';
import { jwkThumbprint, type EcJwk } from '../../spiffe/pki.ts';

/** The caller's certificate as far as its standing goes: validity (ms) and key id (RFC 7638). */
export interface PeerCredential {
  notBefore: number;
  notAfter: number;
  kid: string;
}

/** What a peer's standing is judged by, read from its (chain-verified) certificate. */
export function credentialOf(cert: X509Certificate): PeerCredential {
  return {
    notBefore: Date.parse(cert.validFrom),
    notAfter: Date.parse(cert.validTo),
    kid: jwkThumbprint(cert.publicKey.export({ format: 'jwk' }) as EcJwk),
  };
}

/** 401 `unauthenticated`: the certificate does not stand; 503 `unavailable`: it cannot be told (the live keys are stale). */
export type Refusal = { status: 401; code: 'unauthenticated'; reason: string } | { status: 503; code: 'unavailable'; reason: string };

/**
 * `now`: the sidecar's clock (ms since the epoch), the one its live keys go stale by; `role`:
 * whose certificate it is, for the reason (the inbound side judges clients, the outbound servers).
 */
export async function refusalOf(peer: PeerCredential, liveKeys: LiveKeys | undefined, now: number, role: 'client' | 'server' = 'client'): Promise<Refusal | null> {
  if (now < peer.notBefore || now >= peer.notAfter) return { status: 401, code: 'unauthenticated', reason: `${role} certificate expired or not yet valid` };
  switch (await liveKeys?.standing(peer.kid)) {
    case 'unknown':
      return { status: 401, code: 'unauthenticated', reason: `${role} certificate revoked, superseded or unknown to the CA` };
    case 'stale':
      return { status: 503, code: 'unavailable', reason: 'revocation list stale: the CA has not answered within the staleness bound' };
    default:
      return null;
  }
}
