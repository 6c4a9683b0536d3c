/** A test edge issuer: an ES256 key, its JWKS, and tokens for the identity context. */
import { generateKeyPair, exportJWK, SignJWT, CompactSign, type JWTPayload, type JSONWebKeySet } from 'jose';
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIdentityVerifier, type IdentityVerifier } from '../../../agent/sidecar/identity-context.ts';

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

/** An identity-context verifier trusting `issuer` (its JWKS in a temporary file), and how to remove that file. */
export async function verifierFor(issuer: TestIssuer): Promise<{ verify: IdentityVerifier; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'palisade-jwks-'));
  const jwks = join(dir, 'jwks.json');
  await writeFile(jwks, JSON.stringify(issuer.jwks));
  const verify = await createIdentityVerifier({ issuer: issuer.iss, audience: issuer.aud, jwks });
  return { verify, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
