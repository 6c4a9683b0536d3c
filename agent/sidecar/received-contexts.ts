/**
 * The mesh contexts this workload's inbound side verified, until they expire: the outbound
 * side re-issues only these (delegation.ts), so an application can pass on the context of a
 * request it is serving, and nothing else: not one it made up, saw elsewhere, or kept
 * past its minute.
 */
import type { Actor } from './context-token.ts';
import type { JWTPayload } from 'jose';

export type ReceivedClaims = JWTPayload & { act: Actor; exp: number };

/** Bounded: contexts live a minute, so this covers ~160 requests/s carrying one; the oldest go first. */
const CAPACITY = 10_000;

export class ReceivedContexts {
  #byToken = new Map<string, ReceivedClaims>();

  remember(token: string, claims: ReceivedClaims): void {
    if (this.#byToken.size >= CAPACITY) this.#byToken.delete(this.#byToken.keys().next().value!);
    this.#byToken.set(token, claims);
  }

  /** The claims of a context received and still valid, else undefined. */
  get(token: string, now = Date.now() / 1000): ReceivedClaims | undefined {
    const claims = this.#byToken.get(token);
    if (claims === undefined || claims.exp > now) return claims;
    this.#byToken.delete(token);
    return undefined;
  }
}
