/**
 * The edge's routes file: path prefixes (optionally after a host name) → services.
 *
 *   { "/cards": { "url": "https://127.0.0.1:8443", "spiffeId": "spiffe://td/ns/payments/sa/card-service" },
 *     "admin.bank.example/": { … } }
 *
 * Longest prefix wins, whole segments only (`/cards` matches `/cards` and `/cards/42`, not
 * `/cardsX`); a host-specific entry beats a host-less one of the same length.
 */
import { loadRoutes, type Route } from '../sidecar/outbound.ts';

export interface EdgeRoute extends Route {
  /** The routes file's key, as written. */
  key: string;
  /** Lowercase host name the entry is limited to, if any. */
  host?: string;
  prefix: string;
  /** Unique name of the route toward the mesh (the edge's outbound routes). */
  name: string;
}

const KEY = /^(?:([a-z0-9.-]+))?(\/[^?#\s]*)$/;

export async function loadEdgeRoutes(file: string): Promise<EdgeRoute[]> {
  const doc = await loadRoutes(file);
  const routes = Object.entries(doc).map(([key, route], i) => {
    const match = KEY.exec(key);
    if (!match || match[2].split('/').some((s) => s === '.' || s === '..')) {
      throw new Error(`${file}: route "${key}" must be a path prefix ("/cards") or a lowercase host and a prefix ("api.example/cards"), without dot segments`);
    }
    return { ...route, key, host: match[1], prefix: match[2], name: `route-${i}` };
  });
  if (routes.length === 0) throw new Error(`${file}: no routes`);
  return routes.sort((a, b) => b.prefix.length - a.prefix.length || Number(b.host !== undefined) - Number(a.host !== undefined));
}

/** The route for a request, or undefined. `path` without query. */
export function routeFor(routes: readonly EdgeRoute[], host: string, path: string): EdgeRoute | undefined {
  return routes.find((r) => (r.host === undefined || r.host === host) && covers(r.prefix, path));
}

function covers(prefix: string, path: string): boolean {
  return path === prefix || (path.startsWith(prefix) && (prefix.endsWith('/') || path[prefix.length] === '/'));
}
