/**
 * SPIFFE IDs and caller patterns, validated per the SPIFFE ID specification: scheme
 * `spiffe`, a lowercase trust domain of [a-z0-9.-_], a path of segments of [A-Za-z0-9.-_]
 * with no empty, `.` or `..` segment, no query, fragment, port, user info or
 * percent-encoding. Patterns additionally allow `*` (exactly one segment) and a final `**`.
 */

export type SpiffeParse =
  | { ok: true; trustDomain: string; segments: string[]; rest: boolean }
  | { ok: false; message: string; offset: number };

const PREFIX = 'spiffe://';
const MAX_ID_BYTES = 2048;
const MAX_TRUST_DOMAIN = 255;

/** `pattern: false` for a concrete workload ID (the protected service). */
export function parseSpiffe(text: string, pattern: boolean): SpiffeParse {
  const fail = (message: string, offset = 0): SpiffeParse => ({ ok: false, message, offset });
  if (!text.startsWith(PREFIX)) {
    return fail(text.toLowerCase().startsWith(PREFIX) ? "the scheme must be lowercase 'spiffe://'" : "a SPIFFE ID starts with 'spiffe://'");
  }
  if (Buffer.byteLength(text) > MAX_ID_BYTES) return fail(`a SPIFFE ID is at most ${MAX_ID_BYTES} bytes`);
  const special = /[?#%@:]/.exec(text.slice(PREFIX.length));
  if (special) {
    const what = { '?': 'a query', '#': 'a fragment', '%': 'percent-encoding', '@': 'user info', ':': 'a port' }[special[0]];
    return fail(`a SPIFFE ID must not contain ${what}`, PREFIX.length + special.index);
  }
  const slash = text.indexOf('/', PREFIX.length);
  const trustDomain = text.slice(PREFIX.length, slash < 0 ? undefined : slash);
  const badTd = trustDomainError(trustDomain);
  if (badTd) return fail(badTd.message, PREFIX.length + badTd.offset);
  if (slash < 0) {
    return fail(pattern ? `a caller pattern needs a path; use '${text}/**' for any workload of the trust domain` : 'a workload SPIFFE ID needs a path after the trust domain', text.length);
  }
  const segments: string[] = [];
  let rest = false;
  let offset = slash + 1;
  const parts = text.slice(slash + 1).split('/');
  for (const [i, seg] of parts.entries()) {
    const bad = segmentError(seg, pattern, i === parts.length - 1);
    if (bad) return fail(bad, offset);
    if (seg === '**') rest = true;
    else segments.push(seg);
    offset += seg.length + 1;
  }
  return { ok: true, trustDomain, segments, rest };
}

/** Why `trustDomain` is not a SPIFFE trust domain name (offset: of the offending character), or null. */
export function trustDomainError(trustDomain: string): { message: string; offset: number } | null {
  if (trustDomain === '') return { message: 'missing trust domain', offset: 0 };
  if (trustDomain.length > MAX_TRUST_DOMAIN) return { message: `a trust domain is at most ${MAX_TRUST_DOMAIN} characters`, offset: 0 };
  const bad = /[^a-z0-9._-]/.exec(trustDomain);
  if (!bad) return null;
  const message = /[A-Z]/.test(bad[0])
    ? `the trust domain must be lowercase ('${trustDomain.toLowerCase()}')`
    : `invalid character '${bad[0]}' in trust domain (allowed: a-z 0-9 . - _)`;
  return { message, offset: bad.index };
}

/** The trust domain of a SPIFFE ID parseSpiffe accepted. */
export const trustDomainOf = (id: string): string => id.slice(PREFIX.length).split('/')[0];

function segmentError(seg: string, pattern: boolean, last: boolean): string | null {
  if (seg === '') return "empty path segment ('//' or a trailing '/')";
  if (seg === '.' || seg === '..') return `'${seg}' is not allowed as a path segment`;
  if (pattern && seg === '*') return null;
  if (pattern && seg === '**') return last ? null : "'**' is only allowed as the last segment";
  if (seg.includes('*')) {
    return pattern ? "a wildcard must be a whole segment ('*' or a final '**')" : 'the service must be a concrete SPIFFE ID, without wildcards';
  }
  const bad = /[^A-Za-z0-9._-]/.exec(seg);
  return bad ? `invalid character ${JSON.stringify(bad[0])} in path segment (allowed: A-Z a-z 0-9 . - _)` : null;
}
