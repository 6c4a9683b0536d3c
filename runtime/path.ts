// Path normalization the way Envoy's safe settings do it (normalize_path, merge_slashes,
// path_with_escaped_slashes_action: REJECT_REQUEST), and query decoding.
//
// Rejected (the filter answers 400): a path not starting with "/", a `#` or NUL anywhere
// (raw or %00), a raw backslash, an encoded slash or backslash (%2F, %5C, any case) or a
// malformed escape in the path part. Accepted paths are normalized in this order:
// percent-decode unreserved characters (other escapes keep their bytes, hex uppercased);
// remove "." and ".." segments (RFC 3986 5.2.4, ".." above the root stays at the root);
// merge repeated slashes. A trailing slash is kept and shows as a final empty segment.
import { hexValue, isUnreserved } from "./bytes";

export const PATH_OK: i32 = 0;
export const PATH_BAD: i32 = 1;

/** The normalized path (no query), valid until the next request. */
export let normPtr: usize = 0;
export let normLen: i32 = 0;
/** Its segments (pointers into the decoded buffer), the trailing empty one included. */
export let segCount: i32 = 0;
export let segStart: usize = 0; // i32[]
export let segLen: usize = 0; // i32[]
/** The raw query (after the first "?"), still percent-encoded. */
export let queryPtr: usize = 0;
export let queryLen: i32 = -1;

@inline function setSegment(i: i32, p: usize, len: i32): void {
  store<i32>(segStart + (<usize>i << 2), <i32>p);
  store<i32>(segLen + (<usize>i << 2), len);
}
export function segPtr(i: i32): usize { return <usize>load<i32>(segStart + (<usize>i << 2)); }
export function segSize(i: i32): i32 { return load<i32>(segLen + (<usize>i << 2)); }

const UPPER_HEX = "0123456789ABCDEF";

// Bytes below 64 that the first pass must look at: NUL, '#', '%', '.', '/', '?' (and, above
// 64, only '\\'). Everything else is an ordinary path byte: one shift and test each.
const LOW_SPECIAL: u64 = (<u64>1 << 0) | (<u64>1 << 35) | (<u64>1 << 37) | (<u64>1 << 46) | (<u64>1 << 47) | (<u64>1 << 63);

export function normalizePath(raw: usize, rawLen: i32): i32 {
  segCount = 0;
  queryPtr = 0;
  queryLen = -1;
  if (rawLen == 0 || load<u8>(raw) != 47) return PATH_BAD;
  // One pass over the path part refuses what is refused anywhere, finds the query, and splits
  // the segments of a path normalization leaves as it is (most paths: no escape, backslash,
  // "//" or segment starting with "."), which then needs no other step: its segments point
  // into it, and so does the normalized text. What the general steps below give for it:
  // non-empty segments, plus the empty one a trailing slash makes ("/" alone has none).
  segStart = heap.alloc(<usize>(rawLen + 1) << 2);
  segLen = heap.alloc(<usize>(rawLen + 1) << 2);
  let plain = true;
  let count = 0;
  let seg = 1; // where the current segment starts: i == seg means the byte before is '/'
  let end = rawLen;
  for (let i = 1; i < rawLen; i++) {
    const c = <u32>load<u8>(raw + i);
    if (c >= 64 ? c != 92 : ((LOW_SPECIAL >> <u64>c) & 1) == 0) continue;
    if (c == 47) {
      if (i == seg) plain = false; // "//"
      else {
        setSegment(count, raw + seg, i - seg);
        count++;
      }
      seg = i + 1;
    } else if (c == 46) {
      if (i == seg) plain = false; // a segment starting with "."
    } else if (c == 63) {
      end = i; // the first '?'
      break;
    } else if (c == 37) {
      if (isNulEscape(raw, i, rawLen)) return PATH_BAD;
      plain = false;
    } else if (c == 92) plain = false;
    else return PATH_BAD; // '#', NUL
  }
  if (end < rawLen) {
    queryPtr = raw + end + 1;
    queryLen = rawLen - end - 1;
    for (let i = end + 1; i < rawLen; i++) {
      const c = <u32>load<u8>(raw + i);
      if (c == 35 || c == 0) return PATH_BAD;
      if (c == 37 && isNulEscape(raw, i, rawLen)) return PATH_BAD;
    }
  }
  if (plain) {
    if (end > seg) {
      setSegment(count, raw + seg, end - seg);
      count++;
    } else if (count > 0) { // a trailing slash
      setSegment(count, raw, 0);
      count++;
    }
    segCount = count;
    normPtr = raw;
    normLen = end;
    return PATH_OK;
  }

  // 1. decode into a fresh buffer (decoding never lengthens)
  const buf = heap.alloc(<usize>end);
  let n = 0;
  for (let i = 0; i < end; i++) {
    const c = <u32>load<u8>(raw + i);
    if (c == 92) return PATH_BAD; // raw backslash
    if (c != 37) { store<u8>(buf + n++, <u8>c); continue; }
    if (i + 2 >= end) return PATH_BAD;
    const hi = hexValue(load<u8>(raw + i + 1));
    const lo = hexValue(load<u8>(raw + i + 2));
    if (hi < 0 || lo < 0) return PATH_BAD;
    const v = <u32>((hi << 4) | lo);
    if (v == 47 || v == 92 || v == 0) return PATH_BAD;
    if (isUnreserved(v)) store<u8>(buf + n++, <u8>v);
    else {
      store<u8>(buf + n++, 37);
      store<u8>(buf + n++, <u8>UPPER_HEX.charCodeAt(hi));
      store<u8>(buf + n++, <u8>UPPER_HEX.charCodeAt(lo));
    }
    i += 2;
  }

  // 2. dot segments over a stack that still holds empty segments (RFC order), then
  // 3. merge slashes by dropping the empty ones.
  const maxSegs = n + 1;
  segStart = heap.alloc(<usize>maxSegs << 2);
  segLen = heap.alloc(<usize>maxSegs << 2);
  let top = 0;
  let trailing = false;
  let s = 1;
  while (s <= n) {
    let e = s;
    while (e < n && load<u8>(buf + e) != 47) e++;
    const len = e - s;
    const dot = len == 1 && load<u8>(buf + s) == 46;
    const dotdot = len == 2 && load<u8>(buf + s) == 46 && load<u8>(buf + s + 1) == 46;
    if (dotdot) { if (top > 0) top--; }
    else if (!dot) {
      setSegment(top, buf + s, len);
      top++;
    }
    trailing = len == 0 || dot || dotdot;
    s = e + 1;
  }
  let k = 0;
  for (let i = 0; i < top; i++) {
    const len = segSize(i);
    if (len == 0) continue;
    setSegment(k, segPtr(i), len);
    k++;
  }
  if (trailing && k > 0) {
    setSegment(k, buf, 0);
    segCount = k + 1;
  } else segCount = k;

  // the normalized text: "/" + segments joined by "/" (the trailing empty one gives "/")
  normPtr = heap.alloc(<usize>n + 1);
  normLen = 0;
  store<u8>(normPtr, 47);
  normLen = 1;
  for (let i = 0; i < segCount; i++) {
    if (i > 0) store<u8>(normPtr + normLen++, 47);
    const len = segSize(i);
    memory.copy(normPtr + normLen, segPtr(i), len);
    normLen += len;
  }
  return PATH_OK;
}

/** Is the '%' at `i` the start of "%00"? */
@inline function isNulEscape(raw: usize, i: i32, rawLen: i32): bool {
  return i + 2 < rawLen && load<u8>(raw + i + 1) == 48 && load<u8>(raw + i + 2) == 48;
}

/** Percent-decodes (valid escapes only; `+` stays `+`, as Envoy does) into `dst`; returns the length. */
export function decodeInto(dst: usize, src: usize, len: i32): i32 {
  let n = 0;
  for (let i = 0; i < len; i++) {
    const c = load<u8>(src + i);
    if (c == 37 && i + 2 < len) {
      const hi = hexValue(load<u8>(src + i + 1));
      const lo = hexValue(load<u8>(src + i + 2));
      if (hi >= 0 && lo >= 0) { store<u8>(dst + n++, <u8>((hi << 4) | lo)); i += 2; continue; }
    }
    store<u8>(dst + n++, c);
  }
  return n;
}
