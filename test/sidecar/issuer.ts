/** A test edge issuer: an ES256 key, its JWKS, and tokens for the identity context. */
import { generateKeyPair, exportJWK, SignJWT, CompactSign, type JWTPayload, type JSONWebKeySet } from 'jose';
import { randomBytes } from 'node:crypto';

export interface TestIssuer {
  iss: string;
  aud: string;
  kid: string;
  jwks: JSONWebKeySet;
  /** Signs `claims`; `times` overrides exp/nbf (undefined removes exp) and the kid. */
  token(claims: JWTPayload, times?: { exp?: number; nbf?: number; kid?: string }): Promise<string>;
  /** Signs a payload given as JSON text (for payloads JSON.stringify cannot write, e.g. nested thousands deep). */
  signJson(payload: string): Promise<string>;
}

export async function createIssuer(iss = 'https://login.bank.example', aud = 'bank-apis'): Promise<TestIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = randomBytes(8).toString('hex');
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  return {
    iss,
    aud,
    kid,
    jwks: { keys: [jwk] },
    token(claims, times = {}) {
      const now = Math.floor(Date.now() / 1000);
      const body: JWTPayload = { iss, aud, iat: now, exp: now + 300, ...claims };
      if ('exp' in times) body.exp = times.exp;
      if (times.nbf !== undefined) body.nbf = times.nbf;
      return new SignJWT(body).setProtectedHeader({ alg: 'ES256', kid: times.kid ?? kid }).sign(privateKey);
    },
    signJson(payload) {
      return new CompactSign(new TextEncoder().encode(payload)).setProtectedHeader({ alg: 'ES256', kid }).sign(privateKey);
    },
  };
}
