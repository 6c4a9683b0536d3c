/**
 * The sidecar verifies a caller's fingerprint itself, where Envoy splits the work between
 * jwt_authn (signature, expiry) and the policy filter (binding, replay). Its decision log
 * names a refusal with the filter's reason for the same failure (testing/decision-line.ts,
 * docs/cases.md), so one word means one thing whichever proxy refused; what only jwt_authn
 * checks behind Envoy has a word of its own here.
 */
import type { FingerprintReason } from '../../spiffe/fingerprint.ts';
import type { REASONS } from '../../testing/decision-line.ts';

/** Refusals only the sidecar records (behind Envoy, jwt_authn refuses these before the filter runs). */
export const SIDECAR_REASONS = {
  fingerprint_signature: 'the fingerprint is not an ES256 JWS signed with the key of the caller\'s certificate',
  fingerprint_ath: '`ath` does not match the bearer token sent with the request (or one of them is missing)',
} as const;

export const FINGERPRINT_REASONS: Record<FingerprintReason, keyof typeof REASONS | keyof typeof SIDECAR_REASONS> = {
  missing: 'fingerprint_missing',
  oversized: 'fingerprint_malformed',
  malformed: 'fingerprint_malformed',
  bad_typ: 'fingerprint_malformed',
  bad_alg: 'fingerprint_signature',
  bad_signature: 'fingerprint_signature',
  wrong_subject: 'fingerprint_sub',
  wrong_issuer: 'fingerprint_iss',
  wrong_audience: 'fingerprint_aud',
  wrong_method: 'fingerprint_htm',
  wrong_url: 'fingerprint_htu',
  expired: 'fingerprint_exp',
  iat_skew: 'fingerprint_iat',
  lifetime_too_long: 'fingerprint_lifetime',
  ath_mismatch: 'fingerprint_ath',
  replayed: 'fingerprint_replay',
  replay_cache_full: 'fingerprint_replay_full',
};
