/**
 * One VM id's shared data (Envoy's proxy-wasm-cpp-host src/shared_data.cc: key → value
 * and a compare-and-swap version), kept in flat typed arrays rather than one set of objects
 * per key.
 *
 * Why: the fingerprint replay store reads and writes a random one of 16,384 keys on every
 * request. With a Map of entry objects, each holding a key array and a value array with
 * their own buffers, one lookup chased five or six pointers to cold memory, and on a
 * machine with slow memory that cost more than a microsecond per call. Here a lookup reads
 * one slot of an open-addressing index and one record of the byte slab (key then value,
 * side by side).
 *
 * Records are appended to the slab; a value that outgrows its room moves to a new record
 * with at least twice the room (replay slots gain 16 bytes at a time) and the old record
 * is left behind. Rooms double, so what is left behind never exceeds the live rooms: the
 * slab stays under about twice the live data. Nothing is ever deleted (Envoy's shared data
 * has no delete either).
 */
import { fnv1a } from '../../compiler/fnv1a.ts';
import { sameBytesAt } from './pairs.ts';

export class SharedData {
  /** Open addressing with linear probing: entry number + 1, 0 for an empty slot. */
  private index = new Int32Array(64);
  private count = 0;
  /** Per entry. */
  private hash = new Int32Array(32);
  private keyAt = new Int32Array(32);
  private keyLength = new Int32Array(32);
  private valueLength = new Int32Array(32);
  private room = new Int32Array(32);
  /** The entry's version; 0 is never handed out (it means "no CAS"). */
  cas = new Uint32Array(32);
  private slab = new Uint8Array(4096);
  private used = 0;

  /** The entry holding `key`, or -1. */
  find(key: Uint8Array): number {
    const h = fnv1a(key) | 0;
    const mask = this.index.length - 1;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const e = this.index[i] - 1;
      if (e < 0) return -1;
      if (this.hash[e] === h && this.sameKey(e, key)) return e;
    }
  }

  /** Entry `e`'s value: a view of the slab, valid until the next set. */
  value(e: number): Uint8Array {
    const at = this.keyAt[e] + this.keyLength[e];
    return this.slab.subarray(at, at + this.valueLength[e]);
  }

  /** Stores `value` (copied) under `key` with version `cas`; `e` is find(key) when the caller has it. */
  set(key: Uint8Array, value: Uint8Array, cas: number, e = this.find(key)): void {
    if (e < 0) e = this.add(key, value.length);
    else if (value.length > this.room[e]) this.move(e, value.length);
    this.slab.set(value, this.keyAt[e] + this.keyLength[e]);
    this.valueLength[e] = value.length;
    this.cas[e] = cas;
  }

  private sameKey(e: number, key: Uint8Array): boolean {
    return this.keyLength[e] === key.length && sameBytesAt(key, this.slab, this.keyAt[e]);
  }

  private add(key: Uint8Array, size: number): number {
    if ((this.count + 1) * 2 > this.index.length) this.growIndex();
    const e = this.count++;
    if (e === this.hash.length) this.growEntries();
    this.hash[e] = fnv1a(key) | 0;
    this.keyLength[e] = key.length;
    this.place(e, size);
    this.slab.set(key, this.keyAt[e]);
    this.insert(e);
    return e;
  }

  /** A new record for entry `e`, keeping its key, with room for `size` value bytes. */
  private move(e: number, size: number): void {
    const from = this.keyAt[e];
    this.place(e, Math.max(size, 2 * this.room[e]));
    this.slab.copyWithin(this.keyAt[e], from, from + this.keyLength[e]);
  }

  /** Appends a record for entry `e` (its key length set) with value room for at least `size` bytes. */
  private place(e: number, size: number): void {
    const room = Math.max(16, 2 ** Math.ceil(Math.log2(size || 1)));
    const need = this.keyLength[e] + room;
    if (this.used + need > this.slab.length) this.growSlab(need);
    this.keyAt[e] = this.used;
    this.room[e] = room;
    this.used += need;
  }

  private insert(e: number): void {
    const mask = this.index.length - 1;
    let i = this.hash[e] & mask;
    while (this.index[i] !== 0) i = (i + 1) & mask;
    this.index[i] = e + 1;
  }

  private growIndex(): void {
    this.index = new Int32Array(this.index.length * 2);
    for (let e = 0; e < this.count; e++) this.insert(e);
  }

  private growEntries(): void {
    this.hash = doubled(this.hash);
    this.keyAt = doubled(this.keyAt);
    this.keyLength = doubled(this.keyLength);
    this.valueLength = doubled(this.valueLength);
    this.room = doubled(this.room);
    this.cas = doubled(this.cas);
  }

  private growSlab(need: number): void {
    const slab = new Uint8Array(Math.max(this.slab.length * 2, this.used + need));
    slab.set(this.slab.subarray(0, this.used));
    this.slab = slab;
  }
}

function doubled<T extends Int32Array | Uint32Array>(a: T): T {
  const b = (a instanceof Int32Array ? new Int32Array(a.length * 2) : new Uint32Array(a.length * 2)) as T;
  b.set(a);
  return b;
}
