/**
 * What of the user's token goes into the identity context (docs/edge.md, "Claims"): the
 * standard claims below when present, as they are, and the operator's extra ones
 * (`--edge-claim NAME`). `client_id` is taken from `azp` when the token has no `client_id`
 * (ID-token style providers). Everything else stays at the edge.
 */
import type { JWTPayload } from 'jose';
import { RESERVED_CLAIMS } from '../sidecar/context-token.ts';

export const MAPPED_CLAIMS = ['sub', 'client_id', 'scope', 'scp', 'acr', 'amr', 'auth_time', 'consent', 'risk'];

/** Throws on a name the context reserves for itself (iss, aud, exp, act, …). */
export function checkExtraClaims(names: readonly string[]): void {
  for (const name of names) {
    if (RESERVED_CLAIMS.includes(name)) throw new Error(`claim ${JSON.stringify(name)} is set by the edge itself and cannot be mapped`);
    if (!/^[\x21-\x7e]{1,128}$/.test(name)) throw new Error(`claim name ${JSON.stringify(name)} must be 1–128 visible ASCII characters`);
  }
}

export function userContext(token: JWTPayload, extra: readonly string[] = []): JWTPayload {
  const user: JWTPayload = {};
  for (const name of [...MAPPED_CLAIMS, ...extra]) if (Object.hasOwn(token, name)) user[name] = token[name];
  if (user.client_id === undefined && typeof token.azp === 'string') user.client_id = token.azp;
  return user;
}
