import { Client, errors as undiciErrors } from '../undici.ts';
import type { IssuedSvid } from '../../spiffe/svid.ts';

/** The CA said no (4xx other than 429): retrying the same request cannot help. */
export class CaRejectedError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(`CA refused the request (${code}): ${message}`);
  }
}

/** The CA's TLS certificate does not chain to our trust bundle: a configuration error, never retried. */
export class CaUntrustedError extends Error {}

/** Anything else (refused connection, timeout, 5xx, 429): worth retrying later. */
export class CaUnavailableError extends Error {}

/** The CA's answer to join and renew: the same record it returns for every issued SVID. */
export type SvidResponse = IssuedSvid;

const TLS_TRUST_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * Posts JSON to the CA over TLS verified against the trust bundle, optionally presenting a
 * client certificate. A fresh connection per call: after a rotation the next renewal must
 * present the new SVID, never a pooled connection authenticated with the old one.
 */
export function postToCa(
  caUrl: string,
  bundlePem: string,
  path: string,
  body: object,
  clientCert?: { chainPem: string; keyPem: string },
): Promise<SvidResponse> {
  return requestCa<SvidResponse>(caUrl, bundlePem, { path, method: 'POST', body: JSON.stringify(body), clientCert });
}

/** The key ids (RFC 7638 thumbprints) of the CA's live JWKS: the keys of every usable SVID. */
export async function fetchLiveKeyIds(caUrl: string, bundlePem: string): Promise<string[]> {
  const jwks = await requestCa<{ keys?: unknown }>(caUrl, bundlePem, { path: '/v1/jwks', method: 'GET' });
  if (!Array.isArray(jwks.keys) || !jwks.keys.every((key) => typeof key?.kid === 'string')) {
    throw new CaUnavailableError('CA answered /v1/jwks with something that is not a JWKS with key ids');
  }
  return jwks.keys.map((key: { kid: string }) => key.kid);
}

async function requestCa<T>(
  caUrl: string,
  bundlePem: string,
  call: { path: string; method: 'GET' | 'POST'; body?: string; clientCert?: { chainPem: string; keyPem: string } },
): Promise<T> {
  const { clientCert } = call;
  const client = new Client(caUrl, {
    connect: { ca: bundlePem, ...(clientCert && { cert: clientCert.chainPem, key: clientCert.keyPem }), timeout: 5000 },
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  try {
    const response = await client.request({
      path: call.path,
      method: call.method,
      headers: call.body === undefined ? {} : { 'content-type': 'application/json' },
      body: call.body,
    });
    const text = await response.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new CaUnavailableError(`CA answered ${response.statusCode} with a body that is not JSON`);
    }
    if (response.statusCode === 200) return json as T;
    const error = (json as { error?: { code?: string; message?: string } }).error ?? {};
    if (response.statusCode === 429 || response.statusCode >= 500) {
      throw new CaUnavailableError(`CA answered ${response.statusCode} (${error.code ?? 'unknown'})`);
    }
    throw new CaRejectedError(response.statusCode, error.code ?? 'unknown', error.message ?? '');
  } catch (err) {
    throw classify(err, caUrl);
  } finally {
    void client.destroy().catch(() => {});
  }
}

function classify(err: unknown, caUrl: string): Error {
  if (err instanceof CaRejectedError || err instanceof CaUnavailableError) return err;
  const code = (err as { code?: string }).code ?? '';
  const cause = (err as { cause?: { code?: string } }).cause?.code ?? '';
  if (TLS_TRUST_ERRORS.has(code) || TLS_TRUST_ERRORS.has(cause)) {
    return new CaUntrustedError(`the trust bundle does not verify the CA at ${caUrl} (${code || cause})`);
  }
  if (err instanceof undiciErrors.UndiciError || code || cause) {
    return new CaUnavailableError(`CA at ${caUrl} unreachable (${code || cause || (err as Error).message})`);
  }
  return new CaUnavailableError(`CA at ${caUrl}: ${(err as Error).message}`);
}
