/**
 * The fingerprint's time limits, integer constants only: the policy filter imports this file
 * as AssemblyScript (filters/policy/fingerprint.ts) and everything else as TypeScript
 * (spiffe/fingerprint.ts: the sidecar, the signer, the Envoy bootstrap's jwt_authn), so every
 * checker of a fingerprint agrees on them.
 */

/** Longest lifetime (`exp - iat`), signed and accepted, in seconds. */
export const FINGERPRINT_TTL_SECONDS = 30;
/** Tolerated clock difference, in seconds (Envoy's jwt_authn `clock_skew_seconds`). */
export const FINGERPRINT_SKEW_SECONDS = 5;
