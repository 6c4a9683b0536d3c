/**
 * Opaque access tokens: RFC 7662 introspection at the provider, the edge authenticating as
 * its own client (client_secret_basic). An active answer is cached until the token expires,
 * never longer than MAX_CACHE_SECONDS (a revocation at the provider shows within that) and in
 * bounded memory; inactive answers are not cached.
 */
import { request } from 'undici';
import type { JWTPayload } from 'jose';
import { BearerError } from './bearer-error.ts';

export interface IntrospectionOptions {
  endpoint: URL;
  clientId: string;
  clientSecret: string;
  issuer: string;
  audience: string;
  skewSeconds: number;
  /** Milliseconds since the epoch (tests move it). */
  now?: () => number;
}

export const MAX_CACHE_SECONDS = 60;
const CACHE_ENTRIES = 10_000;
const TIMEOUT_MS = 3_000;

export type Introspect = (token: string) => Promise<JWTPayload>;

export function introspection(opts: IntrospectionOptions): Introspect {
  const cache = new Map<string, { claims: JWTPayload; until: number }>();
  const basic = `Basic ${Buffer.from(`${encodeURIComponent(opts.clientId)}:${encodeURIComponent(opts.clientSecret)}`).toString('base64')}`;
  const clock = opts.now ?? Date.now;
  return async (token) => {
    const now = clock() / 1000;
    const hit = cache.get(token);
    if (hit && hit.until > now) return hit.claims;
    if (hit) cache.delete(token);
    let answer: Record<string, unknown>;
    try {
      const res = await request(opts.endpoint, {
        method: 'POST',
        headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
        headersTimeout: TIMEOUT_MS,
        bodyTimeout: TIMEOUT_MS,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`answered ${res.statusCode}`);
      answer = JSON.parse(text);
    } catch (err) {
      throw new BearerError(503, 'temporarily_unavailable', `token introspection failed: ${(err as Error).message}`);
    }
    if (answer.active !== true) throw new BearerError(401, 'invalid_token', 'the token is not active');
    if (answer.iss !== undefined && answer.iss !== opts.issuer) throw new BearerError(401, 'invalid_token', 'the token is from another issuer');
    const audiences = typeof answer.aud === 'string' ? [answer.aud] : Array.isArray(answer.aud) ? answer.aud : [];
    if (!audiences.includes(opts.audience)) throw new BearerError(401, 'invalid_token', 'the token is not for this audience');
    if (typeof answer.exp !== 'number') throw new BearerError(401, 'invalid_token', 'the introspection answer has no exp');
    if (answer.exp <= now - opts.skewSeconds) throw new BearerError(401, 'invalid_token', 'the token expired');
    if (typeof answer.nbf === 'number' && answer.nbf > now + opts.skewSeconds) throw new BearerError(401, 'invalid_token', 'the token is not yet valid');
    const { active: _active, token_type: _type, ...claims } = answer;
    if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    cache.set(token, { claims, until: Math.min(answer.exp, now + MAX_CACHE_SECONDS) });
    return claims;
  };
}
