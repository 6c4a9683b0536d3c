/**
 * One VM id's shared data (Envoy's proxy-wasm-cpp-host src/shared_data.cc: key → value
 * and a compare-and-swap version), kept in two flat typed arrays rather than one set of
 * objects per key.
 *
 * Why: the fingerprint replay store reads and then writes a random one of 16,384 keys on
 * every request, so every lookup starts in cold memory and what counts is how many cache
 * lines it touches. Here that is one slot of the index (which holds the key's hash next to
 * where its record is) and the record itself, whose header (key length, value length,
 * room, version), key and value sit side by side in the byte slab. Keys are compared and
 * values copied in place, straight from and into the module's memory: no views or objects
 * per call. The set that follows a lookup of the same key reuses that lookup's slot after
 * comparing the key, without hashing or probing again.
 *
 * Records are appended to the slab; a value that outgrows its room moves to a new record
 * with at least twice the room (replay slots gain 16 bytes at a time) and the old record
 * is left behind. Rooms double, so what is left behind never exceeds the live rooms: the
 * slab stays under about twice the live data. Nothing is ever deleted (Envoy's shared data
 * has no delete either).
 */
import { Status } from './abi.ts';

/** Record header, in 32-bit words: key length, value length, value room, version. */
const KEY_LENGTH = 0;
const VALUE_LENGTH = 1;
const ROOM = 2;
const VERSION = 3;
const HEADER = 16;

/**
 * Versions come from one counter for every VM id, as in Envoy (one global store). 0 is
 * never handed out: it means "no CAS".
 */
let nextVersion = 1;

export class SharedData {
  /** Open addressing with linear probing, two words per slot: the key's hash, then its record's offset + 1 (0: empty). */
  private index = new Int32Array(2 * 64);
  private count = 0;
  private slab = new Uint8Array(4096);
  /** The slab as 32-bit words, for record headers (records start 4-aligned). */
  private words = new Int32Array(this.slab.buffer);
  private bytes = new DataView(this.slab.buffer);
  private used = 0;
  /** The slot of the last key found or stored, tried first by the next set. */
  private lastSlot = -1;

  /** The record of the key at key[at, at+length) (a handle valid until the next set on this store), or -1. */
  lookup(key: DataView, at: number, length: number): number {
    const slot = this.probe(key, at, length, hash(key, at, length));
    this.lastSlot = slot;
    return slot < 0 ? -1 : this.index[2 * slot + 1] - 1;
  }

  valueLength(record: number): number {
    return this.words[(record >> 2) + VALUE_LENGTH];
  }

  /** The record's compare-and-swap version (never 0). */
  version(record: number): number {
    return this.words[(record >> 2) + VERSION] >>> 0;
  }

  /** Copies the record's value to out[at] (room for valueLength(record) bytes must exist). */
  copyValue(record: number, out: DataView, at: number): void {
    copy(this.bytes, this.valueAt(record), out, at, this.valueLength(record));
  }

  /** The record's value: a view of the slab, valid until the next set. */
  value(record: number): Uint8Array {
    const from = this.valueAt(record);
    return this.slab.subarray(from, from + this.valueLength(record));
  }

  /**
   * Envoy's set: stores value[valueAt, valueAt+valueLength) (copied) under the key at
   * key[keyAt, keyAt+keyLength) with a new version. `cas` 0 writes unconditionally;
   * otherwise it must equal the stored version unless the key is new. Key and value may be
   * views of the same memory. Returns Status.OK or Status.CAS_MISMATCH.
   */
  set(key: DataView, keyAt: number, keyLength: number, value: DataView, valueAt: number, valueLength: number, cas: number): number {
    let slot = this.lastSlot;
    let added = false;
    if (slot < 0 || !this.holds(slot, key, keyAt, keyLength)) {
      const h = hash(key, keyAt, keyLength);
      slot = this.probe(key, keyAt, keyLength, h);
      if (slot < 0) {
        slot = this.add(h, key, keyAt, keyLength, valueLength);
        added = true; // a new key takes any CAS
      }
    }
    let record = this.index[2 * slot + 1] - 1;
    if (!added && cas !== 0 && cas !== this.version(record)) return Status.CAS_MISMATCH;
    if (valueLength > this.words[(record >> 2) + ROOM]) record = this.move(slot, valueLength);
    copy(value, valueAt, this.bytes, this.valueAt(record), valueLength);
    this.words[(record >> 2) + VALUE_LENGTH] = valueLength;
    this.words[(record >> 2) + VERSION] = nextVersion;
    nextVersion = (nextVersion + 1) >>> 0 || 1;
    this.lastSlot = slot;
    return Status.OK;
  }

  /** The value follows the key, 4-aligned so that copies run in whole words on both sides. */
  private valueAt(record: number): number {
    return record + HEADER + ((this.words[(record >> 2) + KEY_LENGTH] + 3) & ~3);
  }

  /** The slot holding the key (hash `h`), or -1 - the empty slot where it would go. */
  private probe(key: DataView, at: number, length: number, h: number): number {
    const index = this.index;
    const mask = (index.length >> 1) - 1;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const record = index[2 * i + 1] - 1;
      if (record < 0) return -1 - i;
      if (index[2 * i] === h && this.keyIs(record, key, at, length)) return i;
    }
  }

  private holds(slot: number, key: DataView, at: number, length: number): boolean {
    const record = this.index[2 * slot + 1] - 1;
    return record >= 0 && this.keyIs(record, key, at, length);
  }

  private keyIs(record: number, key: DataView, at: number, length: number): boolean {
    return this.words[(record >> 2) + KEY_LENGTH] === length && same(this.bytes, record + HEADER, key, at, length);
  }

  /** A record for a new key (its value not written yet); returns its slot. */
  private add(h: number, key: DataView, at: number, length: number, size: number): number {
    if ((this.count + 1) * 2 > this.index.length >> 1) this.growIndex();
    this.count++;
    const record = this.place(length, size);
    copy(key, at, this.bytes, record + HEADER, length);
    const index = this.index;
    const mask = (index.length >> 1) - 1;
    let i = h & mask;
    while (index[2 * i + 1] !== 0) i = (i + 1) & mask;
    index[2 * i] = h;
    index[2 * i + 1] = record + 1;
    return i;
  }

  /** A new record for the key in `slot` with room for `size` value bytes; returns it. */
  private move(slot: number, size: number): number {
    const from = this.index[2 * slot + 1] - 1;
    const length = this.words[(from >> 2) + KEY_LENGTH];
    const record = this.place(length, Math.max(size, 2 * this.words[(from >> 2) + ROOM]));
    this.slab.copyWithin(record + HEADER, from + HEADER, from + HEADER + length);
    this.words[(record >> 2) + VERSION] = this.words[(from >> 2) + VERSION];
    this.index[2 * slot + 1] = record + 1;
    return record;
  }

  /** Appends a record with this key length and value room for at least `size` bytes. */
  private place(keyLength: number, size: number): number {
    const room = Math.max(16, 2 ** Math.ceil(Math.log2(size || 1)));
    const need = HEADER + ((keyLength + 3) & ~3) + room;
    if (this.used + need > this.slab.length) this.growSlab(need);
    const record = this.used;
    this.used += need;
    this.words[(record >> 2) + KEY_LENGTH] = keyLength;
    this.words[(record >> 2) + ROOM] = room;
    return record;
  }

  private growIndex(): void {
    const old = this.index;
    const index = (this.index = new Int32Array(old.length * 2));
    const mask = (index.length >> 1) - 1;
    for (let s = 0; s < old.length; s += 2) {
      if (old[s + 1] === 0) continue;
      let i = old[s] & mask;
      while (index[2 * i + 1] !== 0) i = (i + 1) & mask;
      index[2 * i] = old[s];
      index[2 * i + 1] = old[s + 1];
    }
    this.lastSlot = -1;
  }

  private growSlab(need: number): void {
    const slab = new Uint8Array(Math.max(this.slab.length * 2, this.used + need));
    slab.set(this.slab.subarray(0, this.used));
    this.slab = slab;
    this.words = new Int32Array(slab.buffer);
    this.bytes = new DataView(slab.buffer);
  }
}

/*
 * Keys and values are read and written four bytes at a time through DataViews, which
 * V8 compiles to plain (unaligned) loads and stores: for the 16 to 256 bytes of a replay
 * slot that is two to four times faster than a byte loop or a native copy, whose fixed
 * cost (a view to make, a call) is about that of 128 bytes copied this way (measured on
 * 2 vCPUs).
 */

/** MurmurHash3 (x86, 32 bit, seed 0) of bytes[at, at+length). */
function hash(bytes: DataView, at: number, length: number): number {
  let h = 0;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    h ^= mix(bytes.getInt32(at + i, true));
    h = Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64;
  }
  let tail = 0;
  for (let shift = 0; i < length; i++, shift += 8) tail |= bytes.getUint8(at + i) << shift;
  h ^= mix(tail) ^ length;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function mix(k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  return Math.imul((k << 15) | (k >>> 17), 0x1b873593);
}

function same(a: DataView, aAt: number, b: DataView, bAt: number, length: number): boolean {
  let i = 0;
  for (; i + 4 <= length; i += 4) if (a.getInt32(aAt + i, true) !== b.getInt32(bAt + i, true)) return false;
  for (; i < length; i++) if (a.getUint8(aAt + i) !== b.getUint8(bAt + i)) return false;
  return true;
}

function copy(from: DataView, fromAt: number, to: DataView, toAt: number, length: number): void {
  if (length > 128) {
    new Uint8Array(to.buffer, to.byteOffset + toAt, length).set(new Uint8Array(from.buffer, from.byteOffset + fromAt, length));
    return;
  }
  let i = 0;
  for (; i + 4 <= length; i += 4) to.setInt32(toAt + i, from.getInt32(fromAt + i, true), true);
  for (; i < length; i++) to.setUint8(toAt + i, from.getUint8(fromAt + i));
}
