/**
 * A refused request at the edge, in RFC 6750 terms: 401 with `WWW-Authenticate: Bearer`
 * and an error code (`invalid_token`; `invalid_request` for a malformed request, answered
 * 400), or no code at all when the request carried no credentials (§3.1).
 */
export type BearerErrorCode = 'invalid_request' | 'invalid_token' | 'temporarily_unavailable' | undefined;

export class BearerError extends Error {
  constructor(readonly status: 400 | 401 | 503, readonly code: BearerErrorCode, message: string) {
    super(message);
  }

  /** The JSON error body the edge answers with. */
  body(): { error: { code: string; message: string } } {
    return { error: { code: this.code ?? 'unauthenticated', message: this.message } };
  }

  /** The challenge: realm, error code and a description without quotes or backslashes. */
  challenge(realm: string): string | undefined {
    if (this.status === 503) return undefined;
    const parts = [`realm="${realm}"`];
    if (this.code) parts.push(`error="${this.code}"`, `error_description="${this.message.replace(/["\\\r\n]/g, "'")}"`);
    return `Bearer ${parts.join(', ')}`;
  }
}
