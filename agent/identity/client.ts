import { Client, errors as undiciErrors } from 'undici';
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
export async function postToCa(
  caUrl: string,
  bundlePem: string,
  path: string,
  body: object,
  clientCert?: { chainPem: string; keyPem: string },
): Promise<SvidResponse> {
  const client = new Client(caUrl, {
    connect: { ca: bundlePem, ...(clientCert && { cert: clientCert.chainPem, key: clientCert.keyPem }), timeout: 5000 },
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  try {
    const response = await client.request({
      path,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await response.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new CaUnavailableError(`CA answered ${response.statusCode} with a body that is not JSON`);
    }
    if (response.statusCode === 200) return json as SvidResponse;
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
