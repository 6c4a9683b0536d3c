// Byte-string helpers. Request data stays in the buffers the host wrote; a string is a
// (pointer, length) pair into them, into static data, or into the request arena.

/** Inlined: most calls (header names against a wanted one) stop at the lengths. */
@inline export function bytesEqual(a: usize, alen: i32, b: usize, blen: i32): bool {
  return alen == blen && sameBytes(a, b, alen);
}

/**
 * Are the `n` bytes at `a` and `b` equal? Eight at a time (wasm loads need no alignment;
 * memory.compare goes byte by byte unless both sides share an alignment), the last load
 * overlapping the one before instead of a loop over the bytes left, never reading past
 * either string.
 */
export function sameBytes(a: usize, b: usize, n: i32): bool {
  if (a == b) return true; // e.g. a path normalization left in place
  if (n >= 8) {
    const last = <usize>(n - 8);
    for (let i: usize = 0; i < last; i += 8) if (load<u64>(a + i) != load<u64>(b + i)) return false;
    return load<u64>(a + last) == load<u64>(b + last);
  }
  if (n >= 4) return load<u32>(a) == load<u32>(b) && load<u32>(a + <usize>n - 4) == load<u32>(b + <usize>n - 4);
  if (n >= 2) return load<u16>(a) == load<u16>(b) && load<u8>(a + <usize>n - 1) == load<u8>(b + <usize>n - 1);
  return n <= 0 || load<u8>(a) == load<u8>(b);
}

/** Byte-wise order (what UTF-8 string comparison means here): <0, 0, >0. */
export function bytesCompare(a: usize, alen: i32, b: usize, blen: i32): i32 {
  const n = alen < blen ? alen : blen;
  const c = memory.compare(a, b, n);
  return c != 0 ? c : alen - blen;
}

export function bytesIndexOf(h: usize, hlen: i32, n: usize, nlen: i32): i32 {
  for (let i = 0; i + nlen <= hlen; i++) {
    if (sameBytes(h + i, n, nlen)) return i;
  }
  return -1;
}

export function hexValue(c: u32): i32 {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** RFC 3986 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~". */
export function isUnreserved(c: u32): bool {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c == 45 || c == 46 || c == 95 || c == 126;
}

/**
 * RFC 9110 §5.5 field-value characters: VCHAR, obs-text, SP and HTAB (Envoy's header
 * validator table). Everything else (CR, LF, NUL, other controls, DEL) is refused.
 */
export function isFieldValue(p: usize, len: i32): bool {
  for (let i = 0; i < len; i++) {
    const c = load<u8>(p + <usize>i);
    if ((c < 32 && c != 9) || c == 127) return false;
  }
  return true;
}

/** Writes `v` in decimal at `dst` (room for 10 digits); returns the number of digits. */
export function writeDecimal(dst: usize, v: u32): i32 {
  let n = 1;
  for (let x = v; x >= 10; x /= 10) n++;
  let p = dst + n;
  do {
    store<u8>(--p, <u8>(48 + v % 10));
    v /= 10;
  } while (v != 0);
  return n;
}

/** A growable byte buffer in the request arena (reset with the arena). */
export class Out {
  ptr: usize;
  len: i32 = 0;
  cap: i32;
  constructor(cap: i32) {
    this.cap = cap;
    this.ptr = heap.alloc(<usize>cap);
  }
  private reserve(n: i32): void {
    if (this.len + n <= this.cap) return;
    let cap = this.cap << 1;
    while (cap < this.len + n) cap <<= 1;
    const p = heap.alloc(<usize>cap);
    memory.copy(p, this.ptr, this.len);
    this.ptr = p;
    this.cap = cap;
  }
  byte(c: u32): Out {
    this.reserve(1);
    store<u8>(this.ptr + this.len, <u8>c);
    this.len++;
    return this;
  }
  bytes(p: usize, n: i32): Out {
    this.reserve(n);
    memory.copy(this.ptr + this.len, p, n);
    this.len += n;
    return this;
  }
  /** ASCII text from a static string literal (only for fixed markup). */
  ascii(s: string): Out {
    const n = s.length;
    this.reserve(n);
    // Straight from the UTF-16 code units (charCodeAt's bounds check per character made the
    // decision log line the filter's single largest cost), four at a time: their low bytes
    // packed into one word.
    const src = changetype<usize>(s);
    const dst = this.ptr + this.len;
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const u = load<u64>(src + (<usize>i << 1));
      store<u32>(dst + i, <u32>(u & 0xff) | <u32>((u >> 8) & 0xff00) | <u32>((u >> 16) & 0xff0000) | <u32>((u >> 24) & 0xff000000));
    }
    for (; i < n; i++) store<u8>(dst + i, load<u8>(src + (<usize>i << 1)));
    this.len += n;
    return this;
  }
  int(v: i32): Out {
    if (v < 0) this.byte(45);
    this.reserve(10);
    this.len += writeDecimal(this.ptr + this.len, v < 0 ? <u32>0 - <u32>v : <u32>v);
    return this;
  }
  u32le(v: u32): Out {
    this.reserve(4);
    store<u32>(this.ptr + this.len, v);
    this.len += 4;
    return this;
  }
  /** Bytes as the inside of a JSON string: quotes, backslashes and controls escaped. */
  jsonEscaped(p: usize, n: i32): Out {
    for (let i = 0; i < n; i++) {
      const c = <u32>load<u8>(p + i);
      if (c == 34 || c == 92) this.byte(92).byte(c);
      else if (c < 32 || c >= 127) {
        this.ascii("\\u00").byte(HEX.charCodeAt(c >> 4)).byte(HEX.charCodeAt(c & 15));
      } else this.byte(c);
    }
    return this;
  }
}

const HEX = "0123456789abcdef";
