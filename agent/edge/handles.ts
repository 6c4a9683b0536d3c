/**
 * Between the edge's HTTPS side and its mesh side (its own outbound listener, which signs
 * fingerprints and holds the mTLS connections): the user context of an authenticated
 * request waits here under a one-time random handle, which the request carries to the
 * outbound side in place of the user's token. The outbound side takes it and mints the
 * context with the very SVID that request goes out under (`authorize`), so a rotation in
 * between cannot split the key that signs the context from the key of the connection, and
 * a request reaching the outbound listener without a live handle is refused: nothing local
 * can send as the edge without having been authenticated by it first.
 */
import { randomBytes } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { DelegationError, type Authorize } from '../sidecar/delegation.ts';
import { mintContext } from '../sidecar/context-token.ts';

/** A handle is taken within milliseconds; one not taken by then is dropped. */
const HANDLE_TTL_MS = 10_000;
const CAPACITY = 10_000;

interface Pending {
  user: JWTPayload;
  target: string;
  /** Unix seconds: the user's token expiry; the context never outlives it. */
  notAfter?: number;
  until: number;
}

export class Handles {
  #pending = new Map<string, Pending>();

  constructor(private readonly contextTtlSeconds?: number) {}

  /** A handle for one request to `target` (`notAfter`: the user token's exp); undefined when too many are pending (answer 503). */
  put(user: JWTPayload, target: string, notAfter?: number): string | undefined {
    const now = Date.now();
    if (this.#pending.size >= CAPACITY) {
      for (const [handle, p] of this.#pending) if (p.until <= now) this.#pending.delete(handle);
      if (this.#pending.size >= CAPACITY) return undefined;
    }
    const handle = randomBytes(32).toString('base64url');
    this.#pending.set(handle, { user, target, notAfter, until: now + HANDLE_TTL_MS });
    return handle;
  }

  /** The outbound side's hook: exchanges the handle for a context minted for this call. */
  readonly authorize: Authorize = async (authorization, call) => {
    const handle = authorization?.startsWith('Bearer ') ? authorization.slice(7) : undefined;
    const pending = handle === undefined ? undefined : this.#pending.get(handle);
    if (handle !== undefined) this.#pending.delete(handle);
    if (!pending || pending.until <= Date.now() || pending.target !== call.target) {
      throw new DelegationError(401, 'not_from_the_edge', 'the edge\'s mesh side sends only requests the edge authenticated');
    }
    return `Bearer ${await mintContext({ ...call, user: pending.user, ttlSeconds: this.contextTtlSeconds, notAfter: pending.notAfter })}`;
  };
}
