/**
 * `palisade learn`'s proposal for one service: one allow rule per caller group with exactly
 * the methods and path templates that group was seen using, and how broad each
 * generalization is, for the coverage report.
 */
import { METHOD } from '../compiler/frontend/check.ts';
import { parseSpiffe, trustDomainOf } from '../compiler/frontend/spiffe.ts';
import { groupCallers } from './callers.ts';
import { firstFree } from './names.ts';
import type { Observed } from './observed.ts';
import { decidable, templatesFor, uncovered, type Template } from './paths.ts';

export interface Thresholds {
  /** Distinct IDs under one prefix before they become `prefix/*`. */
  group: number;
  /** Distinct literal next segments under a prefix before it becomes `prefix/**`. */
  fanout: number;
}

export interface Proposal {
  service: string;
  name: string;
  policy: Record<string, unknown>;
  /** The requests to replay: those with a verified, well-formed caller ID. */
  requests: Observed[];
  /** Observed requests no policy can allow: no verified caller, one that is not a workload SPIFFE ID, a method no policy can name (lowercase…), or a path the filter refuses before any rule (`%2F`…). */
  unallowable: number;
  breadth: Breadth[];
}

export type Breadth =
  | { kind: 'param'; template: string; param: string; values: number }
  | { kind: 'rest'; template: string; paths: number }
  | { kind: 'callers'; pattern: string; ids: number };

/** One proposal per observed service, in service order; `name`s are unique policy names. */
export function propose(observed: Observed[], t: Thresholds): Proposal[] {
  const byService = new Map<string, Observed[]>();
  for (const o of observed) {
    let list = byService.get(o.service);
    if (!list) byService.set(o.service, list = []);
    list.push(o);
  }
  const names = new Set<string>();
  return [...byService].sort(([a], [b]) => a.localeCompare(b)).map(([service, list]) => {
    const requests = list.filter((o) => o.caller !== null && parseSpiffe(o.caller, false).ok && METHOD.test(o.method) && decidable(o.path));
    return { ...proposeOne(service, requests, t, uniqueName(service, names)), requests, unallowable: list.length - requests.length };
  });
}

function uniqueName(service: string, taken: Set<string>): string {
  const base = service.slice(service.lastIndexOf('/') + 1).toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '') || 'service';
  const name = firstFree(base, (x) => taken.has(x));
  taken.add(name);
  return name;
}

function proposeOne(service: string, requests: Observed[], t: Thresholds, name: string): Pick<Proposal, 'service' | 'name' | 'policy' | 'breadth'> {
  const templates = templatesFor(new Set(requests.map((r) => r.path)), t.fanout);
  const groups = groupCallers(new Set(requests.map((r) => r.caller!)), t.group);
  const groupOf = new Map(groups.flatMap((g) => [...g.ids].map((id) => [id, g] as const)));
  const ruleIds = new Set<string>();
  const rules = groups.map((g) => {
    const mine = requests.filter((r) => groupOf.get(r.caller!) === g);
    const byMethod = new Map<string, Set<Template>>();
    for (const r of mine) {
      let set = byMethod.get(r.method);
      if (!set) byMethod.set(r.method, set = new Set());
      set.add(templates.get(r.path)!);
    }
    // Methods with the same paths share one `to` entry.
    const entries = new Map<string, string[]>();
    for (const [method, set] of [...byMethod].sort(([a], [b]) => a.localeCompare(b))) {
      const paths = uncovered([...set]).map((x) => x.text).sort();
      const key = JSON.stringify(paths);
      entries.set(key, [...(entries.get(key) ?? []), method]);
    }
    return {
      id: uniqueRuleId(g.pattern, ruleIds),
      effect: 'allow',
      from: [g.pattern],
      to: [...entries].map(([paths, methods]) => ({ methods, paths: JSON.parse(paths) as string[] })),
    };
  });
  const own = trustDomainOf(service);
  const federated = [...new Set(requests.map((r) => trustDomainOf(r.caller!)))].filter((td) => td !== own).sort();
  const used = new Set(templates.values());
  const breadth: Breadth[] = [
    ...groups.filter((g) => g.pattern.endsWith('/*')).map((g) => ({ kind: 'callers' as const, pattern: g.pattern, ids: g.ids.size })),
    ...[...used].sort((a, b) => a.text.localeCompare(b.text)).flatMap((x): Breadth[] => [
      ...x.params.map((p) => ({ kind: 'param' as const, template: x.text, param: p.name, values: p.values.size })),
      ...(x.segs.rest ? [{ kind: 'rest' as const, template: x.text, paths: x.below.size }] : []),
    ]),
  ];
  const policy = { palisade: 1, name, service, ...(federated.length ? { federatesWith: federated } : {}), mode: 'enforce', rules };
  return { service, name, policy, breadth };
}

/** `from-frontend`, `from-web-any` for a pattern; rule ids allow letters, digits, `.` `_` `:` `-`. */
function uniqueRuleId(pattern: string, taken: Set<string>): string {
  const segs = pattern.split('/');
  const last = segs[segs.length - 1] === '*' ? `${segs[segs.length - 2]}-any` : segs[segs.length - 1];
  const base = `from-${last.replace(/[^A-Za-z0-9._:-]+/g, '-')}`;
  const id = firstFree(base, (x) => taken.has(x));
  taken.add(id);
  return id;
}
