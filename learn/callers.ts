/**
 * Caller patterns from observed SPIFFE IDs: the IDs that differ only in their last segment
 * become `prefix/*` when at least `group` distinct ones were seen (a fleet of workloads under
 * one namespace path); fewer stay exact IDs. `*` is one segment, so a pattern never reaches
 * deeper IDs than the ones that justified it.
 */
export interface CallerGroup {
  /** The pattern (`spiffe://td/ns/web/*`) or the exact ID. */
  pattern: string;
  ids: Set<string>;
}

export function groupCallers(ids: Iterable<string>, group: number): CallerGroup[] {
  const byPrefix = new Map<string, Set<string>>();
  for (const id of ids) {
    const prefix = id.slice(0, id.lastIndexOf('/'));
    let set = byPrefix.get(prefix);
    if (!set) byPrefix.set(prefix, set = new Set());
    set.add(id);
  }
  return [...byPrefix].sort(([a], [b]) => a.localeCompare(b)).flatMap(([prefix, set]) => (set.size >= group
    ? [{ pattern: `${prefix}/*`, ids: set }]
    : [...set].sort().map((id) => ({ pattern: id, ids: new Set([id]) }))));
}
