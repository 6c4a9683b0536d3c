/**
 * The inbound side's check of mesh identity contexts (`--identity-issuer SPIFFE_ID`): a
 * context minted by the edge or re-issued by a sidecar (context-token.ts), verified against
 * the connection and the request it arrived with, used once (its jti), and remembered so the
 * application may pass it on (received-contexts.ts). Tokens that are not mesh contexts go
 * to the external issuer's verifier (`--identity-jwks`) when there is one, else are refused.
 */
import { ReplayCache } from '../../spiffe/replay-cache.ts';
import { ContextError, isContextToken, verifyContext } from './context-token.ts';
import { bearerToken, IdentityContextError, type IdentityVerifier } from './identity-context.ts';
import type { ReceivedContexts } from './received-contexts.ts';

export interface MeshContextOptions {
  /** Our SPIFFE ID. */
  self: string;
  issuers: readonly string[];
  skewSeconds: number;
  received: ReceivedContexts;
  /** For tokens that are not mesh contexts. */
  external?: IdentityVerifier;
  replay?: ReplayCache;
}

export function createMeshVerifier(opts: MeshContextOptions): IdentityVerifier {
  const issuers = new Set(opts.issuers);
  const replay = opts.replay ?? new ReplayCache();
  return async (authorization, request) => {
    const token = bearerToken(authorization);
    if (token === undefined) return undefined;
    if (!isContextToken(token)) {
      if (opts.external) return opts.external(authorization, request);
      throw new IdentityContextError('not_a_mesh_context');
    }
    if (!request) throw new IdentityContextError('no_connection');
    try {
      const claims = await verifyContext(token, { self: opts.self, issuers, ...request, skewSeconds: opts.skewSeconds });
      const verdict = replay.admit(claims.jti, claims.exp + opts.skewSeconds);
      if (verdict !== 'ok') throw new ContextError(verdict === 'replayed' ? 'replayed' : 'replay_cache_full');
      opts.received.remember(token, claims);
      return { token, claims };
    } catch (err) {
      if (err instanceof ContextError) throw new IdentityContextError(err.reason);
      throw err;
    }
  };
}
