/**
 * The checker: a schema-valid (or partly valid) policy document → `CheckedLayer` (a
 * service's own policy, or a scope layer above services). It resolves and types
 * expressions, validates SPIFFE IDs, patterns, scopes, path templates, methods and injected
 * headers, and reports every problem it finds. It reads the document defensively (values of
 * the wrong JSON type are skipped: the schema already reported them).
 */
import { createHash } from 'node:crypto';
import type {
  CheckedLayer, CheckedRule, Diagnostic, Effect, Injection, PathTemplate, PrincipalPattern, RequestMatch, ScopeLevel, Span, TExpr,
} from './ast.ts';
import { parseExpression } from './expr/parser.ts';
import { checkExpr, type ParamScope } from './check-expr.ts';
import { parseSpiffe, trustDomainError, trustDomainOf } from './spiffe.ts';
import { parsePathTemplate } from './path-template.ts';
import { injectHeaderError } from './headers.ts';
import { escapePointer, nodeAt, memberAt, spanAt, spanInString, type Source } from './source.ts';

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === 'string';
/** Uppercase HTTP method tokens (RFC 9110 tchar without lowercase letters). */
export const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Z]+$/;
/** What an HTTP field value (RFC 9110 §5.5) cannot contain: control characters but HTAB, and DEL. */
const FIELD_VALUE_REFUSED = /[\0-\x08\x0a-\x1f\x7f]/;

export function check(src: Source): { layer: CheckedLayer | null; diagnostics: Diagnostic[] } {
  const c = new Checker(src);
  const layer = c.layer();
  const ok = !c.diagnostics.some((d) => d.severity === 'error');
  return { layer: ok ? layer : null, diagnostics: c.diagnostics };
}

class Checker {
  readonly diagnostics: Diagnostic[] = [];
  constructor(private readonly src: Source) {}

  private error(span: Span, message: string): void {
    this.diagnostics.push({ severity: 'error', message, span });
  }

  private warning(span: Span, message: string): void {
    this.diagnostics.push({ severity: 'warning', message, span });
  }

  /** Span of character `offset` of the string value at `pointer`. */
  private inString(pointer: string, offset: number): Span {
    const node = nodeAt(this.src.root, pointer);
    return node.type === 'String' ? spanInString(this.src, node, offset, pointer) : spanAt(this.src, pointer);
  }

  /** The trust domains whose callers the filter accepts (null: the service is invalid, nothing to compare with). */
  private accepted: Set<string> | null = null;

  layer(): CheckedLayer {
    const doc: Json = isObject(this.src.value) ? this.src.value : {};
    const rules = Array.isArray(doc.rules) ? doc.rules : [];
    // A document that says `scope` is checked as a layer even when its scope is invalid (one
    // error for the scope, not one per rule for what a service's policy may not say).
    const layered = isString(doc.scope);
    const scope = layered ? this.scope(doc.scope as string, doc) : null;
    const service = isString(doc.service) ? doc.service : '';
    const own = !layered && isString(doc.service) && this.spiffe(service, '/service', false) ? trustDomainOf(service) : null;
    const federatesWith = !layered && Array.isArray(doc.federatesWith) ? this.federatesWith(doc.federatesWith, own) : [];
    // A scope layer leaves `accepted` null: which trust domains a service accepts is its own
    // policy's say, known only when the layers are composed (compiler/compose/).
    if (own !== null) this.accepted = new Set([own, ...federatesWith]);
    return {
      level: scope ?? { kind: 'service', id: service },
      name: isString(doc.name) ? doc.name : '',
      federatesWith,
      mode: doc.mode === 'dry-run' ? 'dry-run' : 'enforce',
      source: { file: this.src.file, sha256: createHash('sha256').update(this.src.text, 'utf8').digest('hex') },
      rules: this.rules(rules, layered),
      at: { name: spanAt(this.src, '/name'), level: spanAt(this.src, layered ? '/scope' : '/service'), mode: spanAt(this.src, '/mode') },
    };
  }

  /** `scope`: literal segments then a final `**`; a layer has it instead of `service` and `federatesWith`. */
  private scope(text: string, doc: Json): ScopeLevel | null {
    if (doc.service !== undefined) this.error(spanAt(this.src, '/scope'), "a policy has either 'service' (its own service) or 'scope' (every service below a SPIFFE ID prefix), not both");
    if (doc.federatesWith !== undefined) {
      this.error(spanAt(this.src, '/federatesWith'), "'federatesWith' belongs in a service's own policy: a scope layer cannot widen which callers the services below it accept");
    }
    const bare = /^spiffe:\/\/[^/]*$/.test(text);
    const parsed = bare ? null : this.spiffe(text, '/scope', true);
    if (bare || (parsed && (!parsed.rest || parsed.segments.includes('*')))) {
      const hint = bare ? `'${quoted(text)}/**'` : "e.g. 'spiffe://td/**' (the trust domain) or 'spiffe://td/ns/payments/**' (a namespace)";
      this.error(this.inString('/scope', bare ? text.length : 0), `invalid scope '${quoted(text)}': a scope is a SPIFFE ID prefix of whole segments followed by '/**': ${hint}`);
      return null;
    }
    return parsed && { kind: 'scope', text, trustDomain: parsed.trustDomain, segments: parsed.segments };
  }

  private rules(rules: unknown[], scopeLayer: boolean): CheckedRule[] {
    const seen = new Map<string, number>();
    const out: CheckedRule[] = [];
    rules.forEach((raw, index) => {
      if (!isObject(raw)) return;
      const at = `/rules/${index}`;
      const id = isString(raw.id) ? raw.id : '';
      const first = seen.get(id);
      if (first !== undefined) {
        this.error(spanAt(this.src, `${at}/id`), `duplicate rule id '${id}' (first used by rule ${first}, line ${spanAt(this.src, `/rules/${first}`).line})`);
      } else if (id) seen.set(id, index);
      const to = Array.isArray(raw.to) ? this.requestMatches(raw.to, `${at}/to`) : null;
      const params = paramScope(to, raw.to !== undefined);
      const when = isString(raw.when) ? this.expression(raw.when, `${at}/when`, params) : null;
      if (when && when.t !== 'bool' && when.t !== 'dyn') this.error(when.span, `'when' must be a bool expression, not ${when.t}`);
      if (when?.k === 'bool' && !when.v) this.warning(when.span, `rule '${id}' never applies: its 'when' is false`);
      if (raw.effect === 'deny' && isObject(raw.inject) && Object.keys(raw.inject).length) {
        this.warning(spanAt(this.src, `${at}/inject`), `'inject' has no effect on a deny rule`);
      }
      this.appliesBelow(raw, at, scopeLayer);
      out.push({
        id,
        index,
        effect: (raw.effect === 'deny' ? 'deny' : 'allow') satisfies Effect,
        span: spanAt(this.src, at),
        from: Array.isArray(raw.from) ? this.principals(raw.from, `${at}/from`) : null,
        to,
        when,
        inject: isObject(raw.inject) ? this.injections(raw.inject, `${at}/inject`, params) : [],
      });
    });
    return out;
  }

  /**
   * A scope layer's allow rule grants to the services below it only where it says so
   * (`appliesBelow: true`); a deny rule of a scope always applies below, and a service's
   * policy has nothing below it.
   */
  private appliesBelow(rule: Json, at: string, scopeLayer: boolean): void {
    const written = rule.appliesBelow !== undefined;
    if (!scopeLayer && written) {
      this.error(spanAt(this.src, `${at}/appliesBelow`), "'appliesBelow' is for the allow rules of a scope layer: a service's own policy has nothing below it");
    } else if (scopeLayer && rule.effect === 'deny' && written) {
      this.error(spanAt(this.src, `${at}/appliesBelow`), "'appliesBelow' is for allow rules: a scope layer's deny rules always apply to every service below it");
    } else if (scopeLayer && rule.effect === 'allow' && rule.appliesBelow !== true) {
      this.error(
        spanAt(this.src, written ? `${at}/appliesBelow` : at),
        "an allow rule of a scope layer must say \"appliesBelow\": true: it then allows for every service below the scope (a service's other allow rules come from its own policy)",
      );
    }
  }

  /** `federatesWith`: trust domain names, none twice, not the service's own. */
  private federatesWith(items: unknown[], own: string | null): string[] {
    const out: string[] = [];
    items.forEach((td, i) => {
      if (!isString(td)) return;
      const pointer = `/federatesWith/${i}`;
      const bad = trustDomainError(td);
      if (bad) this.error(this.inString(pointer, bad.offset), `invalid trust domain '${td}': ${bad.message}`);
      else if (td === own) this.error(spanAt(this.src, pointer), `'${td}' is the service's own trust domain: list only other trust domains`);
      else if (out.includes(td)) this.error(spanAt(this.src, pointer), `trust domain '${td}' is listed twice`);
      else out.push(td);
    });
    return out;
  }

  private principals(items: unknown[], at: string): PrincipalPattern[] {
    return items.flatMap((text, i) => {
      if (!isString(text)) return [];
      const p = this.spiffe(text, `${at}/${i}`, true);
      if (p && this.accepted && !this.accepted.has(p.trustDomain)) {
        // The filter refuses such a caller (401 foreign_trust_domain) before any rule: the pattern could never match.
        this.error(
          this.inString(`${at}/${i}`, 'spiffe://'.length),
          `trust domain '${p.trustDomain}' is not accepted by this policy: callers of it are unauthenticated before any rule (add it to 'federatesWith' to accept them)`,
        );
        return [];
      }
      return p ? [{ text, trustDomain: p.trustDomain, segments: p.segments, rest: p.rest, span: spanAt(this.src, `${at}/${i}`) }] : [];
    });
  }

  private spiffe(text: string, pointer: string, pattern: boolean) {
    const parsed = parseSpiffe(text, pattern);
    if (parsed.ok) return parsed;
    this.error(this.inString(pointer, parsed.offset), `invalid SPIFFE ${pattern ? 'pattern' : 'ID'} '${quoted(text)}': ${parsed.message}`);
    return null;
  }

  private requestMatches(items: unknown[], at: string): RequestMatch[] {
    return items.flatMap((raw, j): RequestMatch[] => {
      if (!isObject(raw)) return [];
      const here = `${at}/${j}`;
      return [{
        methods: Array.isArray(raw.methods) ? this.methods(raw.methods, `${here}/methods`) : null,
        paths: Array.isArray(raw.paths) ? this.paths(raw.paths, `${here}/paths`) : null,
        span: spanAt(this.src, here),
      }];
    });
  }

  private methods(items: unknown[], at: string): string[] {
    return items.flatMap((m, i): string[] => {
      if (!isString(m)) return [];
      if (METHOD.test(m)) return [m];
      const upper = m.toUpperCase();
      const hint = METHOD.test(upper) ? `methods are case-sensitive and uppercase: did you mean '${upper}'?` : 'not an HTTP method token';
      this.error(spanAt(this.src, `${at}/${i}`), `invalid method ${JSON.stringify(m)}: ${hint}`);
      return [];
    });
  }

  private paths(items: unknown[], at: string): PathTemplate[] {
    return items.flatMap((text, i): PathTemplate[] => {
      if (!isString(text)) return [];
      const parsed = parsePathTemplate(text);
      if (!parsed.ok) {
        this.error(this.inString(`${at}/${i}`, parsed.offset), `invalid path template '${quoted(text)}': ${parsed.message}`);
        return [];
      }
      return [{ text, segments: parsed.segments, rest: parsed.rest, span: spanAt(this.src, `${at}/${i}`) }];
    });
  }

  private injections(inject: Json, at: string, params: ParamScope): Injection[] {
    const seen = new Set<string>();
    return Object.entries(inject).flatMap(([name, text]): Injection[] => {
      const pointer = `${at}/${escapePointer(name)}`;
      const header = name.toLowerCase();
      const keySpan = this.keySpan(at, name, pointer);
      const bad = injectHeaderError(header);
      if (bad) this.error(keySpan, bad);
      else if (seen.has(header)) this.error(keySpan, `header '${header}' is injected twice (names are case-insensitive)`);
      seen.add(header);
      if (!isString(text)) return [];
      const value = this.expression(text, pointer, params, true);
      if (value && value.t !== 'string' && value.t !== 'dyn') {
        this.error(value.span, `injected header '${header}' needs a string expression, not ${value.t}`);
      }
      const badChar = value?.k === 'str' ? FIELD_VALUE_REFUSED.exec(value.v) : null;
      if (value && badChar) {
        this.error(value.span, `injected header '${header}': a header value cannot contain CR, LF or NUL, nor any other control character (found ${JSON.stringify(badChar[0])}; RFC 9110 field values are visible characters, space and tab)`);
      }
      return value && !bad ? [{ header, value, span: spanAt(this.src, pointer) }] : [];
    });
  }

  /** Where an object's key is written (errors about a name point at the name). */
  private keySpan(objectPointer: string, key: string, pointer: string): Span {
    const member = memberAt(this.src.root, objectPointer, key);
    const start = member?.name.loc.start;
    return start ? { file: this.src.file, line: start.line, col: start.column, pointer } : spanAt(this.src, pointer);
  }

  private expression(text: string, pointer: string, params: ParamScope, partialParams = false): TExpr | null {
    const at = (offset: number) => this.inString(pointer, offset);
    const parsed = parseExpression(text);
    if (!parsed.expr) {
      this.error(at(parsed.error?.offset ?? 0), `syntax error: ${parsed.error?.message ?? 'invalid expression'}`);
      return null;
    }
    return checkExpr(parsed.expr, { at, params, partialParams, diagnostics: this.diagnostics });
  }
}

/** A value quoted in a message: the line and column already locate it, so a value of hundreds of KB is cut. */
function quoted(text: string): string {
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}

/** What `request.params.x` may name in a rule: the parameters every path template defines. */
function paramScope(to: RequestMatch[] | null, toWritten: boolean): ParamScope {
  if (!to) return { ok: false, why: toWritten ? "the rule's 'to' is invalid" : "the rule has no 'to'" };
  const templates: { text: string; params: string[] }[] = [];
  for (const m of to) {
    if (!m.paths) return { ok: false, why: "an entry of the rule's 'to' has no 'paths'" };
    for (const p of m.paths) templates.push({ text: p.text, params: p.segments.flatMap((s) => (s.kind === 'param' ? [s.name] : [])) });
  }
  return { ok: true, templates };
}
