/**
 * How an agent reaches the control plane, for the policy stream and the Security Pane's feed
 * alike: its SVID as the client certificate, and a server certificate that must name the
 * control plane's SPIFFE ID in this trust domain (it has no DNS name to check).
 */
import type { PeerCertificate } from 'node:tls';
import type { SvidSource } from '../sidecar/svid.ts';
import { tlsMaterial } from '../sidecar/tls.ts';
import { serverIdentity, trustDomainOf } from '../sidecar/peer.ts';
import { defaultControlId } from './protocol.ts';

/** The control plane's SPIFFE ID: `--control-id`, else the trust domain's default. */
export function controlIdOf(identity: SvidSource, controlId?: string): string {
  return controlId ?? defaultControlId(trustDomainOf(identity.svid().spiffeId));
}

/** undici `connect` options for one connection to the control plane named `controlId`. */
export function controlConnect(identity: SvidSource, controlId: string) {
  const trustDomain = trustDomainOf(identity.svid().spiffeId);
  return {
    ...tlsMaterial(identity),
    servername: undefined,
    timeout: 5_000,
    checkServerIdentity: (_host: string, cert: PeerCertificate) => serverIdentity(cert, controlId, trustDomain),
  };
}
