/** TLS material from the agent's in-memory SVID: TLS 1.3 only, the trust bundle as CAs. */
import type { SecureContextOptions } from 'node:tls';
import type { SvidSource } from './svid.ts';

export function tlsMaterial(identity: Pick<SvidSource, 'svid' | 'trustBundle'>): SecureContextOptions & { minVersion: 'TLSv1.3' } {
  const svid = identity.svid();
  return {
    cert: svid.chainPem,
    // PEM in memory only: node:tls wants the key as text or bytes.
    key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
    ca: identity.trustBundle(),
    minVersion: 'TLSv1.3',
  };
}
