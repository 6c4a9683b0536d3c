/**
 * The OpenID provider the edge trusts, found by discovery (OpenID Connect Discovery 1.0,
 * RFC 8414): its issuer, JWKS and introspection endpoint. https only, or http on loopback
 * for development: the JWKS decides who may act as any user.
 */
import { request } from 'undici';
import { isLoopbackHost } from '../identity/loopback.ts';

export interface ProviderMetadata {
  issuer: string;
  jwksUri: URL;
  introspectionEndpoint?: URL;
}

const DISCOVERY_TIMEOUT_MS = 5_000;
const MAX_METADATA_BYTES = 64 * 1024;

/** An issuer or endpoint URL the edge may fetch: https, or http to a loopback host. */
export function providerUrl(value: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`${what} ${JSON.stringify(value)} is not a URL`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(host))) {
    throw new Error(`${what} ${value} must be https (http only on loopback, for development)`);
  }
  if (url.username || url.password || url.hash) throw new Error(`${what} ${value} must not carry credentials or a fragment`);
  return url;
}

export async function discover(issuer: string): Promise<ProviderMetadata> {
  const base = providerUrl(issuer, '--oidc-issuer');
  const url = new URL(`${base.href.replace(/\/$/, '')}/.well-known/openid-configuration`);
  let doc: Record<string, unknown>;
  try {
    const res = await request(url, { headersTimeout: DISCOVERY_TIMEOUT_MS, bodyTimeout: DISCOVERY_TIMEOUT_MS }); // redirects are not followed
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`answered ${res.statusCode}`);
    if (text.length > MAX_METADATA_BYTES) throw new Error('metadata over 64 KiB');
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`OpenID discovery at ${url.href} failed: ${(err as Error).message}`);
  }
  // OIDC Discovery §4.3: the issuer in the document must be exactly the one asked for.
  if (doc.issuer !== issuer) throw new Error(`OpenID discovery at ${url.href}: issuer is ${JSON.stringify(doc.issuer)}, not ${issuer}`);
  if (typeof doc.jwks_uri !== 'string') throw new Error(`OpenID discovery at ${url.href}: no jwks_uri`);
  return {
    issuer,
    jwksUri: providerUrl(doc.jwks_uri, 'jwks_uri'),
    introspectionEndpoint: typeof doc.introspection_endpoint === 'string' ? providerUrl(doc.introspection_endpoint, 'introspection_endpoint') : undefined,
  };
}
