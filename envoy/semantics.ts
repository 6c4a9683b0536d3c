import type { Issue } from './issue.ts';

/**
 * Checks Envoy makes when it builds objects from a config, beyond the schema: an HTTP
 * filter chain ends with its one terminal filter (the router), names of listeners and
 * clusters are unique, and no domain appears in two virtual hosts of one route table.
 * Keyed by message type; each gets the message's JSON and path.
 */
type Check = (value: Record<string, unknown>, path: string) => Issue[];

const ROUTER = 'envoy.extensions.filters.http.router.v3.Router';

export const MESSAGE_CHECKS: Record<string, Check> = {
  '.envoy.config.bootstrap.v3.Bootstrap': (bootstrap, path) => {
    const resources = object(bootstrap.static_resources);
    return [
      ...unique(list(resources.listeners), (l) => l.name, `${join(path, 'static_resources')}.listeners`, 'listener name'),
      ...unique(list(resources.clusters), (c) => c.name, `${join(path, 'static_resources')}.clusters`, 'cluster name'),
    ];
  },
  '.envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager': (hcm, path) => {
    const filters = list(hcm.http_filters);
    const at = join(path, 'http_filters');
    return filters.flatMap((f, i): Issue[] => {
      const terminal = isTerminal(f);
      if (terminal === undefined) return [];
      const last = i === filters.length - 1;
      if (terminal && !last) return [error(`${at}[${i}]`, `terminal filter '${String(f.name)}' must be the last filter of the HTTP filter chain`)];
      if (!terminal && last) return [error(`${at}[${i}]`, `non-terminal filter '${String(f.name)}' is the last filter of the HTTP filter chain (add the router)`)];
      return [];
    });
  },
  '.envoy.config.route.v3.RouteConfiguration': (routes, path) => {
    const seen = new Map<string, string>();
    const issues: Issue[] = [];
    list(routes.virtual_hosts).forEach((vh, i) => array(vh.domains).forEach((d, j) => {
      const at = `${join(path, 'virtual_hosts')}[${i}].domains[${j}]`;
      if (typeof d !== 'string') return;
      const key = d.toLowerCase();
      if (seen.has(key)) issues.push(error(at, `domain '${d}' already belongs to ${seen.get(key)}`));
      else seen.set(key, `virtual_hosts[${i}]`);
    }));
    return issues;
  },
};

/** Whether an HttpFilter is terminal; undefined when its type cannot be told from the config. */
function isTerminal(filter: Record<string, unknown>): boolean | undefined {
  const typed = object(filter.typed_config);
  const url = typed['@type'] === 'type.googleapis.com/xds.type.v3.TypedStruct' || typed['@type'] === 'type.googleapis.com/udpa.type.v1.TypedStruct'
    ? typed.type_url : typed['@type'];
  if (typeof url === 'string') return url.endsWith(`/${ROUTER}`);
  const discovered = array(object(filter.config_discovery).type_urls);
  if (discovered.length) return discovered.every((u) => typeof u === 'string' && u.endsWith(`/${ROUTER}`));
  return undefined;
}

function unique(items: Record<string, unknown>[], key: (item: Record<string, unknown>) => unknown, path: string, what: string): Issue[] {
  const seen = new Set<unknown>();
  return items.flatMap((item, i) => {
    const k = key(item);
    if (k === undefined || k === '') return [];
    if (seen.has(k)) return [error(`${path}[${i}]`, `duplicate ${what} '${String(k)}'`)];
    seen.add(k);
    return [];
  });
}

function error(path: string, message: string): Issue {
  return { path, message, severity: 'error' };
}

function object(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function array(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function list(v: unknown): Record<string, unknown>[] {
  return array(v).map(object);
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}
