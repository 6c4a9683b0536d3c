/**
 * Every hop (RFC 8693 delegation): when the application calls another service while serving
 * a user's request, it passes on the `authorization` header it received; the outbound side
 * finds that context among the ones its inbound side verified and sends, instead, a context
 * re-issued for the target: same user claims, `iss` = this workload, `aud` = the target,
 * bound to the outgoing request, `act` = { sub: this workload, act: the chain so far }.
 * Any other authorization goes on unchanged (an external issuer's token, or nothing).
 */
import type { Svid } from './svid.ts';
import { bearerToken } from './identity-context.ts';
import { mintContext } from './context-token.ts';
import type { ReceivedContexts } from './received-contexts.ts';

/** The outgoing request an authorization is worked out for. */
export interface OutboundCall {
  /** The SVID the request's mTLS connection and fingerprint use. */
  svid: Svid;
  target: string;
  method: string;
  path: string;
}

/**
 * The outbound side's hook: the `authorization` to send (undefined: none), given the one the
 * application sent. Throws `DelegationError` to refuse the call.
 */
export type Authorize = (authorization: string | undefined, call: OutboundCall) => Promise<string | undefined>;

export class DelegationError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

export function delegation(received: ReceivedContexts, ttlSeconds?: number): Authorize {
  return async (authorization, call) => {
    let token: string | undefined;
    try {
      token = bearerToken(authorization);
    } catch {
      return authorization; // not ours to judge here; the receiver refuses what it cannot verify
    }
    const claims = token === undefined ? undefined : received.get(token);
    if (!claims) return authorization;
    const { act, exp, ...user } = claims;
    const context = await mintContext({ svid: call.svid, target: call.target, method: call.method, path: call.path, user, previous: act, ttlSeconds, notAfter: exp });
    return `Bearer ${context}`;
  };
}
