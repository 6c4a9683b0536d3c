/**
 * The hash of a policy table key (filters/policy/tables.ts keyHash computes the same over the
 * request's bytes): four bytes, little-endian, per multiply, the last four overlapping when
 * the length is not a multiple of four, then MurmurHash3's finalizer.
 */
export function tableHash(bytes: Uint8Array): number {
  const n = bytes.length;
  let h = 0x811c9dc5 ^ n;
  const mix = (w: number) => (h = Math.imul(h ^ w, 0x01000193));
  const word = (i: number) => bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
  if (n >= 4) {
    for (let i = 0; i + 4 < n; i += 4) mix(word(i));
    mix(word(n - 4));
  } else {
    let w = 0;
    for (let i = 0; i < n; i++) w |= bytes[i] << (i * 8);
    mix(w);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
