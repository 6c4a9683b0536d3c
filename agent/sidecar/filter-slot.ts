/**
 * The sidecar's current policy filter and its hot reload. A candidate is loaded into the
 * strict host, checked (it must instantiate and pass the policy's case file when one is
 * configured) and only then swapped in, atomically: each request leases the filter it
 * started with, so requests in flight finish on the old one, which is closed once idle.
 * A candidate that fails its checks is refused and the old filter stays.
 */
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Filter } from '../../host/filter.ts';
import { isoTime } from '../../platform/utc-time.ts';

/** A filter loaded in the strict host (host/). */
export type LoadedFilter = Filter;

/** Loads wasm into the strict host; throws with the reason when it does not instantiate. */
export type FilterLoader = (wasm: Uint8Array) => Promise<LoadedFilter>;
/** Extra acceptance check (e.g. the case file); throws with the reason to refuse. */
export type FilterCheck = (wasm: Uint8Array, filter: LoadedFilter) => Promise<void>;

export interface FilterStatus {
  sha256: string;
  loadedAt: string;
  source: string;
  reloads: number;
  lastRefusal: { at: string; source: string; sha256: string; reason: string } | null;
}

interface Version {
  filter: LoadedFilter;
  sha256: string;
  leases: number;
  retired: boolean;
}

export interface Lease {
  filter: LoadedFilter;
  /** Of the wasm this request runs, for its audit entry (a reload may swap the slot meanwhile). */
  sha256: string;
  release(): void;
}

export class FilterSlot extends EventEmitter {
  #current!: Version;
  #status!: FilterStatus;
  #queue: Promise<unknown> = Promise.resolve();
  #watcher: FSWatcher | undefined;
  #debounce: NodeJS.Timeout | undefined;

  private constructor(private readonly load: FilterLoader, private readonly check?: FilterCheck) {
    super();
  }

  /** The first filter must pass the same checks; a sidecar never starts without one. */
  static async create(wasm: Uint8Array, load: FilterLoader, check?: FilterCheck, source = 'startup'): Promise<FilterSlot> {
    const slot = new FilterSlot(load, check);
    const filter = await slot.#accept(wasm);
    slot.#current = { filter, sha256: sha256(wasm), leases: 0, retired: false };
    slot.#status = { sha256: sha256(wasm), loadedAt: isoTime(Date.now()), source, reloads: 0, lastRefusal: null };
    return slot;
  }

  status(): FilterStatus {
    return structuredClone(this.#status);
  }

  acquire(): Lease {
    const version = this.#current;
    version.leases++;
    let released = false;
    return {
      filter: version.filter,
      sha256: version.sha256,
      release: () => {
        if (released) return;
        released = true;
        if (--version.leases === 0 && version.retired) void version.filter.close();
      },
    };
  }

  /**
   * Offers a new filter. Replacements are applied one at a time in arrival order.
   * Emits 'swapped' (status) or 'refused' (reason).
   */
  replace(wasm: Uint8Array, source: string): Promise<{ ok: true; sha256: string } | { ok: false; reason: string }> {
    const run = async () => {
      const digest = sha256(wasm);
      let filter: LoadedFilter;
      try {
        filter = await this.#accept(wasm);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        this.#status.lastRefusal = { at: isoTime(Date.now()), source, sha256: digest, reason };
        this.emit('refused', { source, sha256: digest, reason });
        return { ok: false as const, reason };
      }
      const old = this.#current;
      this.#current = { filter, sha256: digest, leases: 0, retired: false };
      old.retired = true;
      if (old.leases === 0) void old.filter.close();
      Object.assign(this.#status, { sha256: digest, loadedAt: isoTime(Date.now()), source, reloads: this.#status.reloads + 1 });
      this.emit('swapped', this.status());
      return { ok: true as const, sha256: digest };
    };
    const result = this.#queue.then(run);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  /**
   * Reloads `file` when it changes. The directory is watched, so editors and deploy tools
   * that replace the file by renaming over it are seen too.
   */
  watchFile(file: string): void {
    this.#watcher = watch(dirname(file), (_event, name) => {
      if (name !== basename(file)) return;
      clearTimeout(this.#debounce);
      this.#debounce = setTimeout(async () => {
        let wasm: Uint8Array;
        try {
          wasm = await readFile(file);
        } catch {
          return; // mid-replacement; the rename that completes it fires again
        }
        if (sha256(wasm) !== this.#status.sha256) await this.replace(wasm, `file ${file}`);
      }, 100);
    });
  }

  close(): void {
    this.#watcher?.close();
    clearTimeout(this.#debounce);
    this.#current.retired = true;
    if (this.#current.leases === 0) void this.#current.filter.close();
  }

  async #accept(wasm: Uint8Array): Promise<LoadedFilter> {
    const filter = await this.load(wasm);
    try {
      await this.check?.(wasm, filter);
    } catch (err) {
      await filter.close();
      throw err;
    }
    return filter;
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
