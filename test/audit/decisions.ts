/**
 * Decisions of the card service as its sidecar records them, each with a real fingerprint
 * signed by the frontend's SVID and the claims the sidecar verified in it: what bench/audit.ts appends by the hundred thousand and
 * test/audit/runs.test.ts by the thousand. `signed` distinct requests are signed and reused
 * round robin (signing is the caller's cost, not the log's).
 */
import { X509Certificate } from 'node:crypto';
import { AuditLog } from '../../audit/log.ts';
import type { Decided } from '../../audit/entry.ts';
import { signFingerprint, tokenHash } from '../../spiffe/fingerprint.ts';
import { createCa } from '../agent/sidecar/pki.ts';

const TD = 'bank.example';
const CALLER = `spiffe://${TD}/ns/web/sa/frontend`;
const SERVICE = `spiffe://${TD}/ns/payments/sa/card`;

export async function signedDecisions(signed: number) {
  const ca = await createCa(TD);
  const caller = await ca.issue(CALLER);
  /** The card service's SVID: the log's agent. */
  const service = await ca.issue(SERVICE);
  const cert = new X509Certificate(caller.chainPem);
  const token = 'eyJhbGciOiJFUzI1NiJ9.e30.sig';
  /** The caller certificate, as the sidecar hands it to the log. */
  const ref = { id: AuditLog.certificateId(cert.raw), der: cert.raw };
  const fingerprints = Array.from({ length: signed }, (_, i) =>
    signFingerprint(caller.privateKey, { caller: CALLER, target: SERVICE, method: 'GET', path: `/cards/${i}`, identityToken: token }),
  );
  /** What the sidecar hands over with each fingerprint: the claims it verified (agent/sidecar/audit.ts). */
  const verifiedClaims = fingerprints.map((jws) => JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString('utf8')) as Decided['fingerprintClaims']);
  const decided = (i: number): Decided => ({
    time: new Date().toISOString(),
    trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
    request_id: `req-${i}`,
    service: SERVICE,
    caller: { id: CALLER, serial: cert.serialNumber, cert: ref.id },
    user: { claims: { sub: 'alice', azp: 'web', scope: 'list_cards', acr: 'mfa' }, token_sha256: tokenHash(token) },
    method: 'GET',
    path: `/cards/${i % signed}`,
    decision: 'allow',
    status: 200,
    rule: 'read-card',
    mode: 'enforce',
    reason: 'allowed',
    policy: { sha256: 'a'.repeat(64) },
    fingerprint: fingerprints[i % signed]!,
    fingerprintClaims: verifiedClaims[i % signed],
  });
  return { ca, service, cert, ref, fingerprints, decided, callerKey: caller.privateKey };
}
