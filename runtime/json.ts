// A strict reader for small JSON documents with a fixed shape (the egress filter's plugin
// configuration, the agent's signing answer): objects, strings without escapes or control
// characters, non-negative integers. Anything else fails, so a malformed document is
// refused as a whole, never half-read. Strings are (pointer, length) into the input.

let p: usize = 0;
let end: usize = 0;

/** The last string read by jsonString(), and the last integer read by jsonInt(). */
export let strPtr: usize = 0;
export let strLen: i32 = 0;
export let intValue: i64 = 0;

export function jsonBegin(ptr: usize, len: i32): void {
  p = ptr;
  end = ptr + len;
}

function ws(): void {
  while (p < end) {
    const c = load<u8>(p);
    if (c != 32 && c != 9 && c != 10 && c != 13) return;
    p++;
  }
}

/** Skips white space and consumes `c` when it comes next. */
export function jsonEat(c: u8): bool {
  ws();
  if (p < end && load<u8>(p) == c) { p++; return true; }
  return false;
}

export function jsonString(): bool {
  if (!jsonEat(34)) return false;
  const start = p;
  while (p < end && load<u8>(p) != 34) {
    if (load<u8>(p) == 92 || load<u8>(p) < 32) return false;
    p++;
  }
  if (p >= end) return false;
  strPtr = start;
  strLen = <i32>(p - start);
  p++;
  return true;
}

/** At most 15 digits, no sign, fraction or exponent. */
export function jsonInt(): bool {
  ws();
  let n = 0;
  let v: i64 = 0;
  while (p < end && load<u8>(p) >= 48 && load<u8>(p) <= 57) {
    if (++n > 15 || (n == 2 && v == 0)) return false; // no leading zeros
    v = v * 10 + <i64>(load<u8>(p++) - 48);
  }
  intValue = v;
  return n > 0 && (p >= end || (load<u8>(p) != 46 && load<u8>(p) != 101 && load<u8>(p) != 69));
}

/** Only white space is left. */
export function jsonEnd(): bool {
  ws();
  return p == end;
}

/** The last string equals the ASCII text `s`. */
export function strIs(s: string): bool {
  if (strLen != s.length) return false;
  for (let i = 0; i < strLen; i++) if (<i32>load<u8>(strPtr + i) != s.charCodeAt(i)) return false;
  return true;
}
