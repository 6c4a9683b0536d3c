/**
 * Composition: the checked layers of one service (its own policy and the scope layers above
 * it: the trust-domain root, namespaces) → the one `CheckedPolicy` the back end compiles.
 * docs/policy.md, "Layers", states the semantics; in short:
 * - every deny rule of every layer applies; allow rules are the service's own plus the
 *   `appliesBelow` allows of the layers above (the checker refuses any other scope allow);
 * - the engine decides any applicable deny before any allow, so no rule of a lower layer
 *   (an allow of the same or a narrower path, a `when` that is always true, an injection)
 *   can lift a higher layer's deny;
 * - a scope deny without `from` covers every caller the service accepts, its federated
 *   trust domains too (the service's `federatesWith` must not open a way around it);
 * - the composed filter enforces unless every layer is dry-run;
 * - a higher layer's rule id is qualified by its layer's name (`root/no-admin`).
 * Rules keep their spans, so every later diagnostic names the rule's own file and line.
 * The order of the input does not matter: layers are ordered by depth, root first.
 */
import type { CheckedLayer, CheckedPolicy, CheckedRule, Diagnostic, PrincipalPattern, ScopeLevel, Span } from '../frontend/ast.ts';
import { policyOf } from '../frontend/index.ts';
import { trustDomainOf } from '../frontend/spiffe.ts';

type Scope = CheckedLayer & { level: ScopeLevel };

export function compose(layers: CheckedLayer[]): { policy: CheckedPolicy | null; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const error = (span: Span, message: string) => diagnostics.push({ severity: 'error', message, span });
  const services = layers.filter((l) => l.level.kind === 'service');
  if (services.length !== 1) {
    if (!services.length) error(layers[0]?.at.level ?? { file: '', line: 1, col: 1, pointer: '' }, 'no service policy among the layers: compose scope layers with the policy of one service below them');
    for (const extra of services.slice(1)) error(extra.at.level, `a second service policy (the first is ${where(services[0].at.level)}): compose the layers of one service at a time`);
    return { policy: null, diagnostics };
  }
  const own = services[0];
  const service = (own.level as { id: string }).id;
  const scopes = layers.filter((l): l is Scope => l.level.kind === 'scope').sort((a, b) => a.level.segments.length - b.level.segments.length);
  scopes.forEach((layer, i) => {
    if (!contains(layer.level, service)) error(layer.at.level, `scope '${layer.level.text}' does not contain the service '${service}' (${where(own.at.level)})`);
    // Two scopes that both contain the service and are equally deep are one scope.
    const same = scopes.slice(0, i).find((s) => s.level.segments.length === layer.level.segments.length);
    if (same) error(layer.at.level, `two layers at the same level for one service: '${layer.level.text}' is also the scope of ${where(same.at.level)}`);
    const named = scopes.slice(0, i).find((s) => s.name === layer.name);
    if (named) error(layer.at.name, `layer name '${layer.name}' is also the name of ${where(named.at.name)}: the rule ids of both would read '${layer.name}/…'`);
  });
  if (diagnostics.length) return { policy: null, diagnostics };

  const ordered = [...scopes, own];
  const mode = ordered.every((l) => l.mode === 'dry-run') ? 'dry-run' : 'enforce';
  for (const l of ordered.filter((x) => x.mode !== mode)) {
    const enforcing = ordered.find((x) => x.mode === 'enforce')!;
    diagnostics.push({
      severity: 'warning',
      message: `mode 'dry-run' does not apply: ${where(enforcing.at.level)} enforces, and a layer cannot switch off enforcement of another: the composed filter enforces every layer's rules`,
      span: l.at.mode,
    });
  }
  const everyCaller = [trustDomainOf(service), ...own.federatesWith];
  const rules = [...scopes.flatMap((s) => s.rules.map((r) => fromAbove(s, r, own.federatesWith.length ? everyCaller : null))), ...own.rules]
    .map((r, index) => ({ ...r, index }));
  const policy = policyOf({ ...own, mode, rules }, service);
  policy.layers = ordered.map((l) => ({ ...l.source, level: l.level.kind === 'scope' ? l.level.text : service }));
  return { policy, diagnostics };
}

/** Is `service` (a workload SPIFFE ID) below `scope`, segment by segment? */
export function contains(scope: ScopeLevel, service: string): boolean {
  const [td, ...segments] = service.slice('spiffe://'.length).split('/');
  return td === scope.trustDomain && segments.length > scope.segments.length && scope.segments.every((s, i) => segments[i] === s);
}

/**
 * A rule of a layer above the service, as the composed policy holds it: its id qualified,
 * and a deny without `from` widened to every trust domain the service accepts (`from`
 * omitted means "callers of the service's own trust domain", which would let a federated
 * caller past a root deny). `everyCaller` is null when the service federates with none.
 */
function fromAbove(layer: Scope, rule: CheckedRule, everyCaller: string[] | null): CheckedRule {
  const id = `${layer.name}/${rule.id}`;
  if (rule.effect !== 'deny' || rule.from !== null || !everyCaller) return { ...rule, id };
  const from = everyCaller.map((trustDomain): PrincipalPattern => ({ text: `spiffe://${trustDomain}/**`, trustDomain, segments: [], rest: true, span: rule.span }));
  return { ...rule, id, from };
}

const where = (span: Span): string => `${span.file}:${span.line}:${span.col}`;
