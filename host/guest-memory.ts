/**
 * The module's linear memory as host calls see it: every pointer the module hands over is
 * checked here, and every value the host hands back is written here, into memory the
 * module's own allocator gave (Envoy's copyToPointerSize).
 */
import { Status } from './abi.ts';
import { decodeUtf8, utf8Length, writeUtf8, writePairs, pairsSize, asciiPairsSize, writeAscii, writeAsciiPairs, type Pair } from './pairs.ts';

/**
 * How place() writes one kind of value: its size and a writer that, when not `exact`,
 * assumes ASCII strings and answers false at the first that is not.
 */
export interface Codec<T> {
  size(value: T, exact: boolean): number;
  write(value: T, out: Uint8Array, at: number, exact: boolean): boolean;
}
export const BYTES: Codec<Uint8Array> = {
  size: (b) => b.length,
  write: (b, out, at) => (out.set(b, at), true),
};
const TEXT: Codec<string> = {
  size: (s, exact) => (exact ? utf8Length(s) : s.length),
  write: (s, out, at, exact) => (exact ? (writeUtf8(s, out, at), true) : writeAscii(s, out, at) >= 0),
};
/** Header maps are nearly always ASCII: one pass, and the exact UTF-8 encoding only when not. */
export const PAIRS: Codec<Pair[]> = {
  size: (pairs, exact) => (pairs.length === 0 ? 0 : exact ? pairsSize(pairs) : asciiPairsSize(pairs)),
  write: (pairs, out, at, exact) => (exact ? (writePairs(pairs, out, at), true) : writeAsciiPairs(pairs, out, at)),
};

export class GuestMemory {
  /** The current views; read them through view() (or after it), which renews them once memory grew. */
  u8 = new Uint8Array(0);
  dv = new DataView(this.u8.buffer);
  /** The instance's memory and allocator: attach() sets them once instantiated (the import table exists before). */
  memory!: WebAssembly.Memory;
  private allocate!: (size: number) => number;

  /** `allocate`: the module's malloc (or proxy_on_memory_allocate), run as Envoy runs it (vm.ts). */
  attach(memory: WebAssembly.Memory, allocate: (size: number) => number): void {
    this.memory = memory;
    this.allocate = allocate;
    this.view();
  }

  view(): Uint8Array {
    // Growing wasm memory detaches the old buffer, leaving our views empty: refresh only then.
    if (this.u8.byteLength === 0) {
      this.u8 = new Uint8Array(this.memory.buffer);
      this.dv = new DataView(this.memory.buffer);
    }
    return this.u8;
  }

  /** Is [ptr, ptr+len) inside the module's memory? (A check without making a view.) */
  inBounds(ptr: number, len: number): boolean {
    return (ptr >>> 0) + (len >>> 0) <= this.view().length;
  }

  /** The module's bytes at [ptr, ptr+len), or null when out of bounds. A view: copy to keep. */
  read(ptr: number, len: number): Uint8Array | null {
    const mem = this.view();
    ptr >>>= 0;
    len >>>= 0;
    return ptr + len <= mem.length ? mem.subarray(ptr, ptr + len) : null;
  }

  readString(ptr: number, len: number): string | null {
    const mem = this.view();
    ptr >>>= 0;
    len >>>= 0;
    return ptr + len <= mem.length ? decodeUtf8(mem, ptr, ptr + len) : null;
  }

  setU32(ptr: number, value: number): boolean {
    ptr >>>= 0;
    if (ptr + 4 > this.view().length) return false;
    this.dv.setUint32(ptr, value, true);
    return true;
  }

  setU64(ptr: number, value: bigint): boolean {
    ptr >>>= 0;
    if (ptr + 8 > this.view().length) return false;
    this.dv.setBigUint64(ptr, value, true);
    return true;
  }

  /** Memory from the module's allocator; 0 on failure. */
  alloc(size: number): number {
    const ptr = this.allocate(size) >>> 0;
    return ptr !== 0 && ptr + size <= this.view().length ? ptr : 0;
  }

  /**
   * Envoy's copyToPointerSize: allocate in the module, write `value` there with `codec`,
   * write pointer and size. The first attempt sizes strings as ASCII (no scan); when one is
   * not, the codec says so and the value is written again with exact UTF-8 sizes.
   */
  place<T>(value: T, codec: Codec<T>, ptrPtr: number, sizePtr: number): number {
    let size = codec.size(value, false);
    let ptr = 0;
    if (size > 0) {
      ptr = this.alloc(size);
      if (ptr === 0) return Status.INVALID_MEMORY_ACCESS;
      if (!codec.write(value, this.view(), ptr, false)) {
        size = codec.size(value, true);
        ptr = this.alloc(size);
        if (ptr === 0) return Status.INVALID_MEMORY_ACCESS;
        codec.write(value, this.view(), ptr, true);
      }
    }
    return this.setU32(ptrPtr, ptr) && this.setU32(sizePtr, size) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  }

  copyOut(value: Uint8Array | string, ptrPtr: number, sizePtr: number): number {
    return typeof value === 'string' ? this.place(value, TEXT, ptrPtr, sizePtr) : this.place(value, BYTES, ptrPtr, sizePtr);
  }
}
