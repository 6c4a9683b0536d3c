/**
 * FNV-1a (32 bit) over bytes. The compiler hashes policy table keys with it and
 * runtime/bytes.ts hashes the same way at request time; the host's shared-data store uses
 * it to bucket keys.
 */
export function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}
