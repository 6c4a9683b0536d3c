/**
 * The decision line: every request a policy filter decides is logged once, at level info,
 * as `palisade.decision {json}` (DEVELOPERS.md, filter ↔ host contract). `palisade test`,
 * the sidecar's decision log and anything else that needs the outcome read it here.
 */
import type { Outcome } from '../host/filter.ts';

/** The decision record a policy filter logs for every request. */
export interface Decision {
  decision: string;
  status: number;
  rule: string | null;
  mode: string;
  reason: string;
}

/**
 * Every `reason` a policy filter records (filters/policy/exports.ts and fingerprint.ts), the
 * one vocabulary of docs/cases.md and schema/cases.schema.json (test/testing/reasons.test.ts
 * keeps the four equal).
 */
export const REASONS = {
  allow_rule: 'an allow rule applies: forwarded with its injected headers',
  deny_rule: 'a deny rule applies',
  deny_rule_when_error: "a deny rule applies because its `when` could not be evaluated (fail closed)",
  no_allow_rule: 'no rule applies: default deny',
  inject_invalid_value: 'the applying allow rule would inject a value that is not an HTTP field value',
  bad_headers: 'the request header map cannot be read or is malformed',
  bad_path: 'the path is rejected by normalization',
  headers_too_large: 'the serialized request header map is over 1 MiB',
  path_too_long: 'the `:path` (query included) is over 64 KiB',
  no_identity: 'no client certificate, so no verified caller',
  invalid_principal: "the caller's URI SAN is not a workload SPIFFE ID",
  foreign_trust_domain: "the caller's trust domain is neither the service's nor in `federatesWith`",
  metadata_unreadable: 'the verified claims (jwt_authn metadata) cannot be read, e.g. nested over 100 levels',
  metadata_too_large: 'the verified claims (jwt_authn metadata) are over 64 KiB',
  fingerprint_missing: 'no fingerprint metadata',
  fingerprint_malformed: 'the fingerprint claims are not an object of the expected claims and types',
  fingerprint_sub: '`sub` is not the caller',
  fingerprint_iss: '`iss` is not `sub`',
  fingerprint_aud: "`aud` is not the policy's service",
  fingerprint_htm: '`htm` is not the request method',
  fingerprint_htu: '`htu` is not the request path (without query)',
  fingerprint_exp: 'the fingerprint expired',
  fingerprint_iat: '`iat` is in the future or too old',
  fingerprint_lifetime: '`exp - iat` is longer than 30 s',
  fingerprint_replay: 'the `jti` was accepted before',
  fingerprint_replay_full: "the replay store's slot for this `jti` is full (fail closed)",
} as const;

export const DECISION_PREFIX = 'palisade.decision ';

export function decisionOf(outcome: Pick<Outcome, 'logs'>): Decision | null {
  const line = outcome.logs.find((l) => l.level === 'info' && l.message.startsWith(DECISION_PREFIX));
  if (!line) return null;
  try {
    return JSON.parse(line.message.slice(DECISION_PREFIX.length)) as Decision;
  } catch {
    return null;
  }
}
