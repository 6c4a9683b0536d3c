/**
 * Path templates: `/cards/{id}/**`. Matching runs on the normalized path (percent-decoded
 * unreserved characters, no `.`/`..`/empty segments, no query), so a template that could
 * never equal a normalized path is an error here rather than a rule that silently never
 * applies: no empty, `.` or `..` segments, no `%`, `?`, `#` or `\`.
 */
import type { PathSegment } from './ast.ts';
import { MAX_PATH_BYTES } from './request-limits.ts';

export type PathParse =
  | { ok: true; segments: PathSegment[]; rest: boolean }
  | { ok: false; message: string; offset: number };

/**
 * The filter walks the path trie recursively, one call per segment: this bounds that depth
 * (a SPIFFE ID, at most 2048 bytes, has fewer segments) so that no template can make a
 * request overflow the VM's stack, which would fail every later request on the filter.
 */
export const MAX_TEMPLATE_SEGMENTS = 1024;

const PARAM = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/;
/** RFC 3986 pchar without percent-encoding: unreserved, sub-delims, ':' and '@'. */
const NOT_LITERAL = /[^A-Za-z0-9\-._~!$&'()*+,;=:@]/;

export function parsePathTemplate(text: string): PathParse {
  const fail = (message: string, offset = 0): PathParse => ({ ok: false, message, offset });
  if (!text.startsWith('/')) return fail("a path template starts with '/'");
  if (text === '/') return { ok: true, segments: [], rest: false };
  const segments: PathSegment[] = [];
  const names = new Set<string>();
  let rest = false;
  let offset = 1;
  const parts = text.slice(1).split('/');
  for (const [i, seg] of parts.entries()) {
    if (i === MAX_TEMPLATE_SEGMENTS) return fail(`more than ${MAX_TEMPLATE_SEGMENTS} segments`, offset);
    const last = i === parts.length - 1;
    const param = PARAM.exec(seg);
    if (param) {
      if (names.has(param[1])) return fail(`duplicate parameter '{${param[1]}}'`, offset);
      names.add(param[1]);
      segments.push({ kind: 'param', name: param[1] });
    } else if (seg === '**') {
      if (!last) return fail("'**' is only allowed as the last segment", offset);
      rest = true;
    } else {
      const bad = literalError(seg);
      if (bad) return fail(bad.message, offset + bad.at);
      segments.push({ kind: 'literal', value: seg });
    }
    offset += seg.length + 1;
  }
  // Literals are ASCII, so characters are bytes; a parameter matches one byte at the least,
  // a final `**` one more segment (two bytes).
  const shortest = segments.reduce((n, s) => n + 1 + (s.kind === 'literal' ? s.value.length : 1), 0) + (rest ? 2 : 0);
  if (shortest > MAX_PATH_BYTES) return fail(`the shortest path it matches is ${shortest} bytes, over the ${MAX_PATH_BYTES}-byte limit within which requests are decided (longer ones are 400 path_too_long): no request could match it`);
  return { ok: true, segments, rest };
}

function literalError(seg: string): { message: string; at: number } | null {
  if (seg === '') return { message: "empty path segment ('//' or a trailing '/'): normalized paths have none", at: 0 };
  if (seg === '.' || seg === '..') return { message: `'${seg}' segments are removed by path normalization and never match`, at: 0 };
  const brace = seg.search(/[{}]/);
  if (brace >= 0) {
    return { message: /^\{.*\}$/.test(seg) ? 'a parameter name is a letter or \'_\' followed by letters, digits or \'_\'' : "a parameter '{name}' must be a whole segment", at: brace };
  }
  const star = seg.indexOf('*');
  if (star >= 0) return { message: "use '{name}' for one segment or a final '**' for the rest", at: star };
  const at = seg.search(NOT_LITERAL);
  if (at < 0) return null;
  const c = seg[at];
  const why: Record<string, string> = {
    '%': 'percent-encoding is not allowed (write the decoded character; paths are matched after decoding)',
    '?': 'the query never takes part in path matching',
    '#': 'a fragment is not part of a request path',
    '\\': 'a backslash is not allowed in a path',
  };
  return { message: why[c] ?? `invalid character ${JSON.stringify(c)} in path template`, at };
}
