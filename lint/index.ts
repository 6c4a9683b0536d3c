/**
 * `palisade lint`: what a reviewer would flag in a policy that compiles, each finding at the
 * `file:line:col` of the part concerned, with a rule id, sorted by position, each once:
 *
 * - `dead-rule`: a rule that can never apply (contradictory `to`/`when`, or every request it
 *   matches is denied by an unconditional deny rule): the optimizer's own proof.
 * - `constant-when`: a `when` that is always true (it can be deleted; or it says less than
 *   its author meant).
 * - `redundant-allow`: an allow rule without `when` or `inject` whose every request another
 *   unconditional allow rule without `inject` already allows: deleting it changes nothing.
 * - `duplicate-method`, `duplicate-path`: the same method or path template (up to parameter
 *   names) twice in one `to` entry; `redundant-to`: a `to` entry another entry of the same rule covers.
 * - `ambiguous-paths`: two path templates of different rules that match some common path
 *   while neither covers the other (`/cards/{id}` and `/{kind}/export` both take
 *   `/cards/export`), so which rule a request meets depends on more than its prefix.
 *
 * Everything works on the checked policy and its IR: exact, no sampling.
 */
import type { CheckedPolicy, Diagnostic, PathTemplate, Span } from '../compiler/frontend/ast.ts';
import type { Checked } from '../compiler/index.ts';
import { ruleAt, type Program } from '../compiler/ir/ir.ts';
import { flattenMatch, lower } from '../compiler/ir/lower.ts';
import { trustDomainOf } from '../compiler/frontend/spiffe.ts';
import { callersCover, pathSegs, routesCover, segsCover, type Segs } from '../compiler/optimize/shadow.ts';

export interface Finding {
  id: 'dead-rule' | 'constant-when' | 'redundant-allow' | 'duplicate-method' | 'duplicate-path' | 'redundant-to' | 'ambiguous-paths';
  message: string;
  span: Span;
}

/** Findings for a checked policy, its optimized program and their warnings (`checkPolicy`), sorted by position, each once. */
export function lint({ policy, program, warnings }: Pick<Checked, 'policy' | 'program' | 'warnings'>): Finding[] {
  const findings = [...deadRules(warnings), ...constantWhens(policy, program), ...redundantAllows(policy, program), ...duplicates(policy), ...ambiguousPaths(policy)];
  const seen = new Set<string>();
  return findings
    .sort((a, b) => a.span.line - b.span.line || a.span.col - b.span.col || a.id.localeCompare(b.id))
    .filter((f) => {
      const key = `${f.span.line}:${f.span.col}:${f.id}:${f.message}`;
      return !seen.has(key) && seen.add(key);
    });
}

export function formatFinding(f: Finding): string {
  return `${f.span.file}:${f.span.line}:${f.span.col}: warning: ${f.message} [${f.id}] (at ${f.span.pointer || '/'})`;
}

function deadRules(warnings: Diagnostic[]): Finding[] {
  return warnings.filter((w) => /can never apply/.test(w.message)).map((w) => ({ id: 'dead-rule', message: w.message, span: w.span }));
}

/** Rules whose `when` the optimizer folded away as always true (always false is a dead rule). */
function constantWhens(policy: CheckedPolicy, program: Program): Finding[] {
  const live = new Map(program.rules.map((r) => [r.id, r]));
  return policy.rules
    .filter((r) => r.when && live.get(r.id)?.when === null)
    .map((r) => ({ id: 'constant-when', message: `the \`when\` of rule '${r.id}' is always true`, span: r.when!.span }));
}

function redundantAllows(policy: CheckedPolicy, program: Program): Finding[] {
  const own = trustDomainOf(policy.service);
  const live = new Set(program.rules.map((r) => r.id));
  const plain = lower(policy).rules.filter((r) => r.effect === 'allow' && r.when === null && r.inject.length === 0 && live.has(r.id));
  return plain.flatMap((r) => {
    // Of two rules that cover each other, the later one is reported.
    const by = plain.find((o) => o !== r && callersCover(o.from, r.from, own) && routesCover(o.routes, r.routes)
      && !(o.index > r.index && callersCover(r.from, o.from, own) && routesCover(r.routes, o.routes)));
    return by ? [{ id: 'redundant-allow' as const, message: `rule '${r.id}' allows nothing that rule '${by.id}' (${ruleAt(policy, by)}) does not already allow`, span: r.span }] : [];
  });
}

function duplicates(policy: CheckedPolicy): Finding[] {
  const out: Finding[] = [];
  for (const rule of policy.rules) {
    const entries = rule.to ?? [];
    entries.forEach((m, k) => {
      m.methods?.forEach((x, i) => {
        if (m.methods!.indexOf(x) !== i) out.push({ id: 'duplicate-method', message: `method ${x} is listed twice in this \`to\` entry of rule '${rule.id}'`, span: m.span });
      });
      m.paths?.forEach((p, i) => {
        const twin = m.paths!.slice(0, i).find((q) => sameShape(pathSegs(q), pathSegs(p)));
        if (twin) out.push({ id: 'duplicate-path', message: `path ${p.text} matches exactly what ${twin.text} matches (same entry of rule '${rule.id}')`, span: p.span });
      });
      // Of two entries that cover each other, the later one is reported.
      const other = entries.findIndex((o, j) => j !== k && routesCover(flattenMatch(o), flattenMatch(m)) && (j < k || !routesCover(flattenMatch(m), flattenMatch(o))));
      if (other >= 0) out.push({ id: 'redundant-to', message: `this \`to\` entry of rule '${rule.id}' matches nothing that entry ${other} does not`, span: m.span });
    });
  }
  return out;
}

const sameShape = (a: Segs, b: Segs) => segsCover(a, b) && segsCover(b, a);

/** Do some paths match both? (Lengths compatible, and no position where both are different literals.) */
function intersect(a: Segs, b: Segs): boolean {
  const la = a.segs.length;
  const lb = b.segs.length;
  const lengthsMeet = a.rest && b.rest ? true : a.rest ? lb > la || b.rest : b.rest ? la > lb : la === lb;
  if (!lengthsMeet) return false;
  for (let i = 0; i < Math.min(la, lb); i++) if (a.segs[i] !== null && b.segs[i] !== null && a.segs[i] !== b.segs[i]) return false;
  return true;
}

function ambiguousPaths(policy: CheckedPolicy): Finding[] {
  const templates = policy.rules.flatMap((rule) => (rule.to ?? []).flatMap((m) => (m.paths ?? []).map((t) => ({ rule, t, segs: pathSegs(t) }))));
  // Buckets by first literal segment keep this near-linear for policies of distinct prefixes.
  const byFirst = new Map<string | null, typeof templates>();
  for (const x of templates) {
    const first = x.segs.segs[0] ?? null;
    byFirst.set(first, [...(byFirst.get(first) ?? []), x]);
  }
  // One finding per template, naming the first template it is ambiguous with.
  return templates.flatMap((a) => {
    const first = a.segs.segs[0] ?? null;
    const candidates = first === null ? templates : [...(byFirst.get(first) ?? []), ...(byFirst.get(null) ?? [])];
    const others = candidates.filter((b) => a.rule !== b.rule && before(b.t, a.t) && intersect(a.segs, b.segs) && !segsCover(a.segs, b.segs) && !segsCover(b.segs, a.segs))
      .sort((x, y) => (before(x.t, y.t) ? -1 : 1));
    if (!others.length) return [];
    const b = others[0];
    const more = others.length > 1 ? ` (and ${others.length - 1} more)` : '';
    return [{ id: 'ambiguous-paths' as const, message: `path ${a.t.text} of rule '${a.rule.id}' and ${b.t.text} of rule '${b.rule.id}' (line ${b.t.span.line})${more} both match some paths, and neither covers the other`, span: a.t.span }];
  });
}

const before = (x: PathTemplate, y: PathTemplate) => x.span.line < y.span.line || (x.span.line === y.span.line && x.span.col < y.span.col);
