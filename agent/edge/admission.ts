/**
 * What the edge decides about one request before anything enters the mesh, whoever carries
 * it (the Node edge's HTTPS listener, or Envoy through ext_authz): the path is origin-form
 * without dot segments, the bearer token authenticates, and a route names the service. One
 * function, so Envoy mode answers exactly as the Node edge does.
 */
import type { JWTPayload } from 'jose';
import { htuOf } from '../../spiffe/fingerprint.ts';
import { BearerError } from './bearer-error.ts';
import type { Authenticate } from './bearer.ts';
import { routeFor, type EdgeRoute } from './routes.ts';

export interface EdgeRequest {
  /** Origin-form, with query, as received. */
  path: string;
  /** The Host / :authority as received (a port is ignored). */
  host: string;
  authorization: string | undefined;
  /** More than one authorization header arrived. */
  repeated: boolean;
}

/** Authenticated, but no route matches: 404 `no_route`. */
export class NoRouteError extends Error {}

export function noRouteBody(err: NoRouteError): { error: { code: string; message: string } } {
  return { error: { code: 'no_route', message: err.message } };
}

/** The verified claims and the route, or throws BearerError / NoRouteError. `onClaims` sees the claims as soon as they are verified (logging). */
export async function admit(
  routes: readonly EdgeRoute[],
  authenticate: Authenticate,
  req: EdgeRequest,
  onClaims?: (claims: JWTPayload) => void,
): Promise<{ claims: JWTPayload; route: EdgeRoute }> {
  if (!req.path.startsWith('/') || htuOf(req.path).split('/').some((s) => /^(\.|%2e){1,2}$/i.test(s))) {
    throw new BearerError(400, 'invalid_request', 'the path must be origin-form without dot segments');
  }
  const claims = await authenticate(req.authorization, req.repeated);
  onClaims?.(claims);
  const host = req.host.replace(/:\d+$/, '').toLowerCase();
  const route = routeFor(routes, host, htuOf(req.path));
  if (!route) throw new NoRouteError(`no service for ${host}${htuOf(req.path)}`);
  return { claims, route };
}
