/**
 * Values decoded from module memory, remembered by address. Filters pass the same property
 * paths and header names from their static data on every request, so a value seen at the
 * same address with the same bytes is not decoded again. The bytes are compared in place
 * (no view is made): the module may have rewritten them since.
 */
import { sameBytesAt } from './pairs.ts';

export class AddressCache<T> {
  private readonly seen = new Map<number, { bytes: Uint8Array; value: T }>();

  constructor(
    private readonly decode: (bytes: Uint8Array) => T,
    /** Addresses remembered; beyond it new ones are decoded every time (a module reading ever new addresses cannot grow the cache). */
    private readonly limit = 256,
  ) {}

  /** The value of [ptr, ptr+len) in `memory`; the caller has checked that the range lies inside it. */
  get(memory: Uint8Array, ptr: number, len: number): T {
    const seen = this.seen.get(ptr);
    if (seen && seen.bytes.length === len && sameBytesAt(seen.bytes, memory, ptr)) return seen.value;
    const bytes = memory.slice(ptr, ptr + len);
    const value = this.decode(bytes);
    if (this.seen.size < this.limit || seen) this.seen.set(ptr, { bytes, value });
    return value;
  }
}
