/**
 * Request limits the policy filter enforces, integer constants only: the filter imports this
 * file as AssemblyScript (filters/policy/exports.ts) and the compiler as TypeScript, so one
 * definition serves both, and a path template no request within the limits could match is
 * refused when it is compiled instead of becoming a rule that never applies.
 */

/** Longest `:path` (query included) decided on; Envoy's default header limit (60 KiB) keeps real ones below. */
export const MAX_PATH_BYTES = 64 * 1024;
