// The caller's SPIFFE ID, checked before any rule. Envoy only guarantees that the peer's
// certificate chain verified against the trust bundle; the URI SAN it hands over
// (`connection.uri_san_peer_certificate`) is whatever that certificate carries. A CA of a
// federated or misconfigured bundle can sign any string, so the filter itself checks the
// SPIFFE ID syntax (SPIFFE-ID.md: `spiffe://`, a trust domain of [a-z0-9._-], a path of
// non-empty segments of [A-Za-z0-9._-] that are not `.` or `..`; this excludes
// percent-encoding, query, fragment, port and user info) and that the trust domain is the
// policy's own or one it federates with (compiler/frontend/check.ts, `federatesWith`).
import { bytesEqual, sameBytes } from "../../runtime/bytes";
import { principalLen, principalPtr } from "../../runtime/request";
import { H_PRINCIPALS, H_SERVICE, H_SERVICE_LEN, b, hashFind, t } from "./tables";

export const CALLER_OK = 0;
export const CALLER_INVALID = 1;
export const CALLER_FOREIGN = 2;

/** Whether the caller belongs to the policy's own trust domain (what a rule without `from` admits). */
export let callerLocal = false;
/** Where the caller's path starts (the `/` after its trust domain), for the principal index. */
export let callerPathAt: i32 = 0;

const SPIFFE = memory.data<u8>([115, 112, 105, 102, 102, 101, 58, 47, 47]); // "spiffe://"
const MAX_ID_BYTES = 2048;
const MAX_TRUST_DOMAIN = 255;

/** CALLER_OK, CALLER_INVALID (not a workload SPIFFE ID) or CALLER_FOREIGN (a trust domain the policy does not accept). */
export function checkCaller(): i32 {
  callerLocal = false;
  const p = principalPtr;
  const len = principalLen;
  if (len < 9 || len > MAX_ID_BYTES || !sameBytes(p, SPIFFE, 9)) return CALLER_INVALID;
  let s = 9;
  while (s < len && isDomainByte(load<u8>(p + s))) s++;
  const domainLen = s - 9;
  // A workload's ID has a path (X509-SVID.md): the trust domain alone, or any other byte, is not one.
  if (domainLen == 0 || domainLen > MAX_TRUST_DOMAIN || s == len || load<u8>(p + s) != 47) return CALLER_INVALID;
  callerPathAt = s;
  while (s < len) {
    const start = ++s; // past the '/'
    while (s < len && isSegmentByte(load<u8>(p + s))) s++;
    const n = s - start;
    if (s < len && load<u8>(p + s) != 47) return CALLER_INVALID; // a byte outside the segment alphabet
    if (n == 0 || (n == 1 && load<u8>(p + start) == 46) || (n == 2 && load<u16>(p + start) == 0x2e2e)) return CALLER_INVALID;
  }
  callerLocal = bytesEqual(p + 9, domainLen, b(t(H_SERVICE)) + 9, serviceDomainLen());
  // Every other accepted trust domain has an entry in the principal index (compiler/optimize/dispatch.ts).
  if (!callerLocal && hashFind(t(H_PRINCIPALS), p + 9, domainLen) < 0) return CALLER_FOREIGN;
  return CALLER_OK;
}

/** The policy's own trust domain: its service ID up to the first `/` after `spiffe://` (validated at compile time). */
function serviceDomainLen(): i32 {
  const service = b(t(H_SERVICE));
  const len = t(H_SERVICE_LEN);
  let s = 9;
  while (s < len && load<u8>(service + s) != 47) s++;
  return s - 9;
}

@inline function isDomainByte(c: u8): bool {
  return (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c == 46 || c == 45 || c == 95; // a-z 0-9 . - _
}

@inline function isSegmentByte(c: u8): bool {
  return isDomainByte(c) || (c >= 65 && c <= 90); // and A-Z
}
