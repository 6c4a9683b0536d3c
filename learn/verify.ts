/**
 * The proof a proposal is what it claims: it compiles, lint finds nothing, and every
 * observed request it is meant to allow is allowed by the compiled filter in the strict
 * host (each distinct caller, method and path once: a proposal has no `when`, so the
 * decision depends on nothing else). Fingerprints are off for the replay: they bind a request
 * to its caller's signature whatever the policy, and a replay of hundreds of thousands of
 * distinct requests within their 35 s lifetime would fill the replay store and be refused
 * for that alone (docs/policy.md, "Fingerprints").
 */
import { checkPolicy, compilePolicy } from '../compiler/index.ts';
import { formatDiagnostic } from '../compiler/frontend/ast.ts';
import { formatFinding, lint } from '../lint/index.ts';
import { evaluate } from '../testing/cases.ts';
import { FilterSet } from '../testing/filter-set.ts';
import type { Proposal } from './propose.ts';

export interface Verified {
  /** Observed requests (all of them, repeats included) the compiled proposal allows. */
  allowed: number;
  /** Up to 10 requests it does not allow, as `METHOD path from caller: decision (reason)`. */
  refused: string[];
  /** lint's findings, formatted; none expected. */
  findings: string[];
}

export async function verify(file: string, proposal: Proposal): Promise<Verified> {
  const text = `${JSON.stringify(proposal.policy, null, 2)}\n`;
  const checked = checkPolicy(file, text);
  const compiled = checked.ok ? await compilePolicy(file, text) : checked;
  if (!compiled.ok) throw new Error(`the proposal for ${proposal.service} does not compile: ${compiled.diagnostics.map(formatDiagnostic).join('; ')}`);
  const findings = checked.ok ? lint(checked).map(formatFinding) : [];
  const filters = new FilterSet(compiled.wasm, file);
  const decided = new Map<string, boolean>();
  const refused: string[] = [];
  let allowed = 0;
  try {
    const filter = await filters.for({ fingerprint: 'off' });
    for (const r of proposal.requests) {
      const key = JSON.stringify([r.caller, r.method, r.path]);
      let ok = decided.get(key);
      if (ok === undefined) {
        const result = await evaluate(filter, { method: r.method, path: r.path, source: r.caller! }, proposal.service, 'learn');
        const d = typeof result === 'string' ? null : result.decision;
        ok = d?.decision === 'allow';
        decided.set(key, ok);
        if (!ok && refused.length < 10) refused.push(`${r.method} ${r.path} from ${r.caller}: ${typeof result === 'string' ? result : `${d?.decision ?? 'no decision'} (${d?.reason ?? ''})`}`);
      }
      if (ok) allowed++;
    }
  } finally {
    await filters.close();
  }
  return { allowed, refused, findings };
}
