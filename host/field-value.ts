/**
 * RFC 9110 §5.5 field values, as Envoy's header validator (UHV, `kGenericHeaderValueCharTable`)
 * accepts them: VCHAR, obs-text (0x80-0xFF), SP and HTAB. Envoy's header map itself only
 * asserts that no value holds NUL, CR or LF (`validHeaderString`, in debug builds; a release
 * build stores the value), so the strict host refuses the whole class up front.
 */
export function isFieldValue(bytes: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = bytes[i];
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return false;
  }
  return true;
}
