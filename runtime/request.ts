// The request as the filter reads it: the header map in one host call, the caller's
// SPIFFE ID in one property read, and the dynamic metadata (protobuf; the identity-context
// claims and the fingerprint claims jwt_authn verified) in one property read on first use. Everything points into host-written buffers in the
// request arena; nothing is copied unless decoding needs it.
import { NOT_FOUND, OK, getProperty, getRequestHeaderPairs, readProperty, retLen, retPtr } from "./abi";
import { bytesEqual, sameBytes } from "./bytes";
import { decodeInto, queryLen, queryPtr } from "./path";
import {
  PB_STRUCT, entryKeyLen, entryKeyPtr, entryValLen, entryValPtr, foundLen as pbFoundLen, foundPtr as pbFoundPtr, nextEntry, structGet,
  valLen, valPtr, valueKind,
} from "./pb";

const PEER = memory.data<u8>([99, 111, 110, 110, 101, 99, 116, 105, 111, 110, 0, 117, 114, 105, 95, 115, 97, 110, 95, 112, 101, 101, 114, 95, 99, 101, 114, 116, 105, 102, 105, 99, 97, 116, 101, 0]); // "connection\0uri_san_peer_certificate\0"
const PEER_LEN = 36;
// The whole dynamic metadata (envoy.config.core.v3.Metadata, serialized protobuf, typed),
// read once: Envoy serves a Struct reached by a deeper path as untyped header pairs, but a
// message attribute as its wire bytes, which keep every claim's JSON type.
const METADATA = memory.data<u8>([109, 101, 116, 97, 100, 97, 116, 97, 0]); // "metadata\0"
const METADATA_LEN = 9;
const JWT_AUTHN = memory.data<u8>([101, 110, 118, 111, 121, 46, 102, 105, 108, 116, 101, 114, 115, 46, 104, 116, 116, 112, 46, 106, 119, 116, 95, 97, 117, 116, 104, 110]); // "envoy.filters.http.jwt_authn"
const USER = memory.data<u8>([117, 115, 101, 114]); // "user"
const FINGERPRINT = memory.data<u8>([102, 105, 110, 103, 101, 114, 112, 114, 105, 110, 116]); // "fingerprint"
const REQUEST_ID_PROP = memory.data<u8>([114, 101, 113, 117, 101, 115, 116, 0, 105, 100, 0]); // "request\0id\0"
const REQUEST_ID_PROP_LEN = 11;
const METHOD = memory.data<u8>([58, 109, 101, 116, 104, 111, 100]); // ":method"
const PATH = memory.data<u8>([58, 112, 97, 116, 104]); // ":path"
const AUTHORITY = memory.data<u8>([58, 97, 117, 116, 104, 111, 114, 105, 116, 121]); // ":authority"
const REQUEST_ID = memory.data<u8>([120, 45, 114, 101, 113, 117, 101, 115, 116, 45, 105, 100]); // "x-request-id"

/** Size of the serialized header map (over MAX_HEADER_BYTES: refused unread). */
export let headerBytes: i32 = 0;
/** Header pairs: count, and per pair key/value pointer and length (i32 × 4). */
export let headerCount: i32 = 0;
let pairs: usize = 0;

export let methodPtr: usize = 0;
export let methodLen: i32 = 0;
export let rawPathPtr: usize = 0;
export let rawPathLen: i32 = -1;
export let hostPtr: usize = 0;
export let hostLen: i32 = 0;
export let principalPtr: usize = 0;
export let principalLen: i32 = 0;

/**
 * Bounds on what one request makes the filter read (docs/host.md, "Limits"): the metadata
 * (claims) is walked once per claim the policy reads, and the serialized header map is
 * copied and indexed, so both bound the work and the memory a request can take.
 */
export const MAX_METADATA_BYTES: i32 = 64 * 1024;
export const MAX_HEADER_BYTES: i32 = 1024 * 1024;

/**
 * The jwt_authn Struct of the dynamic metadata: -1 not read yet, 0 absent, 1 present,
 * 2 malformed, 3 unreadable (the host could not serialize it: nested too deep), 4 too large.
 */
let jwtAuthnState: i32 = -1;
const UNREADABLE = 3;
const TOO_LARGE = 4;
/** Its `user` and `fingerprint` Values, from one pass over it: length -1 when absent. */
let userPtr: usize = 0;
let userLen: i32 = -1;
let fingerprintPtr: usize = 0;
let fingerprintLen: i32 = -1;
/** Claims Struct: -1 not looked up yet, 0 absent (no identity context), 1 present. */
let claimsState: i32 = -1;
export let claimsPtr: usize = 0;
export let claimsLen: i32 = 0;

/** Reads headers and caller identity; false when the header map is unreadable, malformed or over MAX_HEADER_BYTES. */
export function beginRequest(): bool {
  headerCount = 0;
  headerBytes = 0;
  jwtAuthnState = -1;
  claimsState = -1;
  methodLen = 0;
  rawPathLen = -1;
  hostLen = 0;
  principalLen = getProperty(PEER, PEER_LEN) ? retLen : 0;
  principalPtr = retPtr;
  if (!getRequestHeaderPairs()) return false;
  headerBytes = retLen;
  return headerBytes <= MAX_HEADER_BYTES && parsePairs(retPtr, retLen);
}

// Serialized pairs: u32 count, (u32 keyLen, u32 valueLen) × count, then each key and value
// followed by a NUL byte.
function parsePairs(ptr: usize, len: i32): bool {
  if (len < 4) return false;
  const n = load<i32>(ptr);
  if (n < 0 || 4 + <i64>n * 8 > <i64>len) return false;
  pairs = heap.alloc(<usize>n << 4);
  let data = ptr + 4 + (<usize>n << 3);
  const end = ptr + len;
  // The pseudo-headers the filter always needs are picked up in the same pass; only a
  // repeated one (joined by header()) takes another.
  let methods = 0;
  let paths = 0;
  let authorities = 0;
  for (let i = 0; i < n; i++) {
    const kl = load<u32>(ptr + 4 + (<usize>i << 3));
    const vl = load<u32>(ptr + 8 + (<usize>i << 3));
    if (<u64>data + kl + vl + 2 > <u64>end) return false;
    const e = pairs + (<usize>i << 4);
    const vp = data + kl + 1;
    store<i32>(e, <i32>data);
    store<i32>(e + 4, kl);
    store<i32>(e + 8, <i32>vp);
    store<i32>(e + 12, vl);
    if (kl > 0 && load<u8>(data) == 58) { // ':'
      if (kl == 7 && sameBytes(data, METHOD, 7)) { if (methods++ == 0) { methodPtr = vp; methodLen = vl; } }
      else if (kl == 5 && sameBytes(data, PATH, 5)) { if (paths++ == 0) { rawPathPtr = vp; rawPathLen = vl; } }
      else if (kl == 10 && sameBytes(data, AUTHORITY, 10)) { if (authorities++ == 0) { hostPtr = vp; hostLen = vl; } }
    }
    data += kl + vl + 2;
  }
  headerCount = n;
  if (methods > 1 && header(METHOD, 7)) { methodPtr = foundPtr; methodLen = foundLen; }
  if (paths > 1 && header(PATH, 5)) { rawPathPtr = foundPtr; rawPathLen = foundLen; }
  if (authorities > 1 && header(AUTHORITY, 10)) { hostPtr = foundPtr; hostLen = foundLen; }
  return true;
}

export function headerKeyPtr(i: i32): usize { return <usize>load<i32>(pairs + (<usize>i << 4)); }
export function headerKeyLen(i: i32): i32 { return load<i32>(pairs + (<usize>i << 4) + 4); }
function headerValPtr(i: i32): usize { return <usize>load<i32>(pairs + (<usize>i << 4) + 8); }
function headerValLen(i: i32): i32 { return load<i32>(pairs + (<usize>i << 4) + 12); }

/** Result of header()/query()/requestId(). */
export let foundPtr: usize = 0;
export let foundLen: i32 = 0;

/** A header's value; several occurrences are joined with "," as Envoy's own lookup does. */
export function header(name: usize, nameLen: i32): bool {
  let hits = 0;
  let total = 0;
  for (let i = 0; i < headerCount; i++) {
    if (!bytesEqual(headerKeyPtr(i), headerKeyLen(i), name, nameLen)) continue;
    if (hits++ == 0) { foundPtr = headerValPtr(i); foundLen = headerValLen(i); }
    total += headerValLen(i) + 1;
  }
  if (hits > 1) {
    const out = heap.alloc(<usize>total);
    let n = 0;
    for (let i = 0; i < headerCount; i++) {
      if (!bytesEqual(headerKeyPtr(i), headerKeyLen(i), name, nameLen)) continue;
      if (n > 0) store<u8>(out + n++, 44);
      memory.copy(out + n, headerValPtr(i), headerValLen(i));
      n += headerValLen(i);
    }
    foundPtr = out;
    foundLen = n;
  }
  return hits > 0;
}

/** Is there a header `name` (without joining the values of several)? */
export function hasHeader(name: usize, nameLen: i32): bool {
  for (let i = 0; i < headerCount; i++) if (bytesEqual(headerKeyPtr(i), headerKeyLen(i), name, nameLen)) return true;
  return false;
}

/** Query parameter (names and values percent-decoded; the first occurrence wins). */
export function query(name: usize, nameLen: i32): bool {
  return queryScan(name, nameLen) >= 0;
}

/** Number of query parameters. */
export function queryCount(): i32 {
  return queryScan(0, -1);
}

// Walks "a=1&b=2"; with nameLen -1 counts parameters, else finds `name` (returns 1, or -1).
function queryScan(name: usize, nameLen: i32): i32 {
  if (queryLen <= 0) return nameLen < 0 ? 0 : -1;
  // A name decodes from at most 3 raw bytes per byte: longer ones cannot match and are not
  // decoded, so each call takes memory for the name, not for the query (a policy may look
  // up parameters many times per request, and the VM keeps what a request grew).
  const tmp = heap.alloc(<usize>max(nameLen, 0) * 3);
  let count = 0;
  let s = 0;
  while (s <= queryLen) {
    let e = s;
    while (e < queryLen && load<u8>(queryPtr + e) != 38) e++;
    if (e > s) {
      count++;
      let eq = s;
      while (eq < e && load<u8>(queryPtr + eq) != 61) eq++;
      if (nameLen >= 0 && eq - s <= nameLen * 3 && decodeInto(tmp, queryPtr + s, eq - s) == nameLen && sameBytes(tmp, name, nameLen)) {
        const vs = eq < e ? eq + 1 : e;
        foundPtr = heap.alloc(<usize>(e - vs) + 1);
        foundLen = decodeInto(foundPtr, queryPtr + vs, e - vs);
        return 1;
      }
    }
    s = e + 1;
  }
  return nameLen < 0 ? count : -1;
}

/**
 * Metadata.filter_metadata["envoy.filters.http.jwt_authn"] (a Struct), from the one read of
 * the `metadata` attribute per request, and its two members the filter reads, found in one
 * pass over it (both are wanted on most requests); false when absent or malformed.
 */
function jwtAuthn(): bool {
  if (jwtAuthnState < 0) {
    jwtAuthnState = 0;
    userLen = -1;
    fingerprintLen = -1;
    const status = readProperty(METADATA, METADATA_LEN);
    if (status == OK) {
      if (retLen > MAX_METADATA_BYTES) jwtAuthnState = TOO_LARGE;
      else {
        const found = structGet(retPtr, retLen, JWT_AUTHN, 28); // filter_metadata is field 1 with map entries, like Struct.fields
        if (found < 0) jwtAuthnState = 2;
        else if (found == 1) jwtAuthnState = readMembers(pbFoundPtr, pbFoundLen) ? 1 : 2;
      }
    } else if (status != NOT_FOUND) jwtAuthnState = UNREADABLE;
  }
  return jwtAuthnState == 1;
}

/**
 * Why this request's metadata, read so far, refuses it (a decision `reason`), or "": a
 * jwt_authn that could not be served or is too large to read is a token Envoy's jwt_authn
 * would have refused (payload nested deeper than its parser takes), so the request is
 * unauthenticated, whatever the rules say.
 */
export function metadataRefusal(): string {
  if (jwtAuthnState == UNREADABLE) return "metadata_unreadable";
  if (jwtAuthnState == TOO_LARGE) return "metadata_too_large";
  return "";
}

/** Struct entries `user` and `fingerprint` (the last of each wins, as structGet); false when malformed. */
function readMembers(ptr: usize, len: i32): bool {
  let p = ptr;
  const end = ptr + len;
  while (p < end) {
    p = nextEntry(p, end);
    if (!p) return false;
    if (bytesEqual(entryKeyPtr, entryKeyLen, USER, 4)) { userPtr = entryValPtr; userLen = entryValLen; }
    else if (bytesEqual(entryKeyPtr, entryKeyLen, FINGERPRINT, 11)) { fingerprintPtr = entryValPtr; fingerprintLen = entryValLen; }
  }
  return true;
}

/** A member Value (length -1: absent) that must hold a Struct: 1 found (valPtr/valLen), 0 absent, -1 malformed. */
function memberStruct(ptr: usize, len: i32): i32 {
  if (len < 0) return 0;
  return valueKind(ptr, len) == PB_STRUCT ? 1 : -1;
}

/**
 * The identity-context claims: the jwt_authn Struct's `user` (a Value holding a Struct).
 * Looked up on first use; false: no identity context (no metadata, no jwt_authn entry, no
 * `user`, or not a Struct).
 */
export function claims(): bool {
  if (claimsState < 0) {
    claimsState = jwtAuthn() && memberStruct(userPtr, userLen) == 1 ? 1 : 0;
    if (claimsState == 1) { claimsPtr = valPtr; claimsLen = valLen; }
  }
  return claimsState == 1;
}

/** The verified fingerprint claims (jwt_authn `payload_in_metadata: fingerprint`): 1 in valPtr/valLen, 0 absent, -1 malformed or refused (metadataRefusal()). */
export function fingerprintClaims(): i32 {
  if (!jwtAuthn()) return jwtAuthnState >= 2 ? -1 : 0;
  return memberStruct(fingerprintPtr, fingerprintLen);
}

/** The request id for replies: `x-request-id`, else the host's `request.id` property, else empty. */
export function requestId(): void {
  if (header(REQUEST_ID, 12)) return;
  if (getProperty(REQUEST_ID_PROP, REQUEST_ID_PROP_LEN)) { foundPtr = retPtr; foundLen = retLen; return; }
  foundLen = 0;
}
