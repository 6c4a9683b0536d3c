/**
 * Path templates from observed paths, over one service's whole traffic so that every rule of
 * its proposal draws on the same templates (two rules never hold overlapping variants of one
 * path): a segment that looks like an identifier becomes `{param}`, and below a prefix with
 * more than `fanout` distinct literal next segments everything becomes `prefix/**`.
 */
import { segsCover, type Segs } from '../compiler/optimize/shadow.ts';
import { firstFree } from './names.ts';
import { MAX_PATH_BYTES } from '../compiler/frontend/request-limits.ts';

/** Numeric ids, UUIDs, hex of 16+ digits, base64url of 22+ characters mixing letters and digits. */
const ID_LIKE = [/^\d+$/, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, /^[0-9a-f]{16,}$/i, /^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_-]{22,}$/];
/** What a template may hold as a literal segment (docs/policy.md, "Path templates"); anything else can only be a parameter. */
const LITERAL = /^[A-Za-z0-9._~!$&'()+,;=:@-]+$/;
const PARAM = null;

/**
 * Whether the filter decides this path at all: it refuses with 400, before any rule, a path
 * over MAX_PATH_BYTES or holding an encoded slash or backslash, a fragment, a NUL or a
 * malformed escape (docs/policy.md, "Decisions"), so no policy can allow it.
 */
export function decidable(path: string): boolean {
  const q = path.indexOf('?');
  const p = q < 0 ? path : path.slice(0, q);
  return Buffer.byteLength(path) <= MAX_PATH_BYTES && !/%(2f|5c|00)|%(?![0-9a-f]{2})|[#\0]/i.test(p);
}

/** The path's segments as the filter matches them: query dropped, unreserved escapes decoded, `.`, `..` and empty segments resolved. */
export function pathSegments(path: string): string[] {
  const q = path.indexOf('?');
  const out: string[] = [];
  for (const raw of (q < 0 ? path : path.slice(0, q)).split('/')) {
    const seg = raw.replace(/%([0-9A-Fa-f]{2})/g, (m, h: string) => {
      const c = String.fromCharCode(parseInt(h, 16));
      return /[A-Za-z0-9._~-]/.test(c) ? c : m;
    });
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return out;
}

const isParam = (seg: string): boolean => !LITERAL.test(seg) || ID_LIKE.some((re) => re.test(seg));

interface Node {
  literals: Map<string, Node>;
  param: Node | null;
  /** More distinct literal children than the fan-out threshold: everything below is `**`. */
  collapsed: boolean;
}

const node = (): Node => ({ literals: new Map(), param: null, collapsed: false });

export interface Template {
  text: string;
  segs: Segs;
  /** Per parameter, in order: its name and the distinct observed values it stood for. */
  params: { name: string; values: Set<string> }[];
  /** For a `**` template: the distinct observed paths it covers. */
  below: Set<string>;
}

/** Maps each distinct observed path of one service to its template. */
export function templatesFor(paths: Iterable<string>, fanout: number): Map<string, Template> {
  const root = node();
  const split = new Map<string, string[]>();
  for (const p of paths) {
    const segs = pathSegments(p);
    split.set(p, segs);
    let n = root;
    for (const s of segs) {
      if (isParam(s)) n = n.param ??= node();
      else {
        let next = n.literals.get(s);
        if (!next) n.literals.set(s, next = node());
        n = next;
      }
    }
  }
  const mark = (n: Node): void => {
    n.collapsed = n.literals.size > fanout;
    if (!n.collapsed) [...n.literals.values(), ...(n.param ? [n.param] : [])].forEach(mark);
  };
  mark(root);

  const byText = new Map<string, Template>();
  const out = new Map<string, Template>();
  for (const [p, segs] of split) {
    const parts: string[] = [];
    const shape: (string | null)[] = [];
    const values: string[] = [];
    let n = root;
    let rest = false;
    for (const s of segs) {
      if (n.collapsed) { rest = true; break; }
      if (isParam(s)) {
        parts.push(paramName(parts, shape));
        shape.push(PARAM);
        values.push(s);
        n = n.param!;
      } else {
        parts.push(s);
        shape.push(s);
        n = n.literals.get(s)!;
      }
    }
    const text = `/${[...parts, ...(rest ? ['**'] : [])].join('/')}`;
    let t = byText.get(text);
    if (!t) byText.set(text, t = { text, segs: { segs: shape, rest }, params: parts.filter((x) => x.startsWith('{')).map((name) => ({ name, values: new Set<string>() })), below: new Set() });
    values.forEach((v, i) => t!.params[i].values.add(v));
    if (rest) t.below.add(p);
    out.set(p, t);
  }
  return out;
}

/** `{card_id}` after `cards`, `{id}` with no literal before it; unique in its template (`{card_id_2}`). */
function paramName(parts: string[], shape: (string | null)[]): string {
  const prev = shape.length && shape[shape.length - 1] !== PARAM ? shape[shape.length - 1]!.replace(/[^A-Za-z0-9_]/g, '_').replace(/ies$/, 'y').replace(/s$/, '') : '';
  const base = /^[A-Za-z_]/.test(prev) ? `${prev}_id` : 'id';
  return `{${firstFree(base, (x) => parts.includes(`{${x}}`), '_')}}`;
}

/**
 * The templates of a set that no other one of it covers (`/cards/{card_id}` makes
 * `/cards/export` redundant). Two templates cover each other only if they are one shape, and
 * `templatesFor` makes one object per shape.
 */
export function uncovered(templates: Template[]): Template[] {
  return templates.filter((t) => !templates.some((o) => o !== t && segsCover(o.segs, t.segs)));
}
