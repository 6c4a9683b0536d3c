// The plugin configuration: a JSON object with two optional members, "mode"
// ("enforce" | "dry-run") and "fingerprint" ("required", the default, | "off"), e.g.
// {"mode":"dry-run"}. Unknown members, other value types,
// escapes in strings, trailing bytes or invalid JSON are rejected, so a typo in the
// configuration can never silently leave a filter in a mode nobody asked for.

export const CONFIG_INVALID = -1;
export const CONFIG_DEFAULT = 0;
export const CONFIG_ENFORCE = 1;
export const CONFIG_DRY_RUN = 2;

let p: usize = 0;
let end: usize = 0;

function ws(): void {
  while (p < end) {
    const c = load<u8>(p);
    if (c != 32 && c != 9 && c != 10 && c != 13) return;
    p++;
  }
}

function eat(c: u8): bool {
  ws();
  if (p < end && load<u8>(p) == c) { p++; return true; }
  return false;
}

/** Reads a string without escapes; its bytes are compared against `want` (ASCII). */
function stringIs(want: string): i32 {
  if (!eat(34)) return -1;
  const start = p;
  while (p < end && load<u8>(p) != 34) {
    if (load<u8>(p) == 92 || load<u8>(p) < 32) return -1;
    p++;
  }
  if (p >= end) return -1;
  const len = <i32>(p - start);
  p++;
  if (len != want.length) return 0;
  for (let i = 0; i < len; i++) if (<i32>load<u8>(start + i) != want.charCodeAt(i)) return 0;
  return 1;
}

/** Set by parseConfig: `"fingerprint": "off"` (default: fingerprints required). */
export let fingerprintOff = false;

/** Which of two ASCII strings comes next: 0, 1, or -1 (neither, or not a plain string). */
function oneOf(a: string, b: string): i32 {
  ws();
  const save = p;
  if (stringIs(a) == 1) return 0;
  p = save;
  return stringIs(b) == 1 ? 1 : -1;
}

/** The mode (CONFIG_DEFAULT when not given), or CONFIG_INVALID; `fingerprintOff` as a side result. */
export function parseConfig(ptr: usize, len: i32): i32 {
  p = ptr;
  end = ptr + len;
  let mode = CONFIG_DEFAULT;
  let fingerprint = -1;
  if (!eat(123)) return CONFIG_INVALID; // {
  if (!eat(125)) {
    while (true) {
      const member = oneOf("mode", "fingerprint");
      if (member < 0 || !eat(58)) return CONFIG_INVALID;
      if (member == 0) {
        if (mode != CONFIG_DEFAULT) return CONFIG_INVALID;
        const m = oneOf("enforce", "dry-run");
        if (m < 0) return CONFIG_INVALID;
        mode = m == 0 ? CONFIG_ENFORCE : CONFIG_DRY_RUN;
      } else {
        if (fingerprint >= 0) return CONFIG_INVALID;
        fingerprint = oneOf("required", "off");
        if (fingerprint < 0) return CONFIG_INVALID;
      }
      if (eat(125)) break;
      if (!eat(44)) return CONFIG_INVALID;
    }
  }
  ws();
  if (p != end) return CONFIG_INVALID;
  fingerprintOff = fingerprint == 1;
  return mode;
}
