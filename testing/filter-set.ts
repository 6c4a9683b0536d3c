/**
 * One compiled filter loaded in the strict host once per plugin configuration its cases ask
 * for (a case's `config`), so cases of one configuration share one filter instance (and its
 * fingerprint replay store) in file order, as requests to one proxy would.
 */
import { loadFilter, type Filter } from '../host/index.ts';

export class FilterSet {
  readonly #loaded = new Map<string, Promise<Filter>>();
  /** Whether the filter without configuration is ours to close. */
  readonly #owned: boolean;

  /**
   * `wasm` is loaded as `name`; `running`, when given, is that filter already loaded without
   * a plugin configuration (the sidecar's candidate), used for cases without `config`.
   */
  constructor(readonly wasm: Uint8Array, readonly name: string, running?: Filter) {
    if (running) this.#loaded.set('', Promise.resolve(running));
    this.#owned = !running;
  }

  /** The filter for a plugin configuration (undefined: none); rejects with FilterLoadError when the filter refuses it. */
  for(config: Record<string, unknown> | undefined): Promise<Filter> {
    const key = config === undefined ? '' : JSON.stringify(config);
    let filter = this.#loaded.get(key);
    if (!filter) {
      filter = loadFilter(this.wasm, { name: this.name, ...(key ? { configuration: key } : {}) });
      this.#loaded.set(key, filter);
    }
    return filter;
  }

  /** Closes every filter this set loaded (not one it was given). */
  async close(): Promise<void> {
    for (const [key, filter] of this.#loaded) {
      if (key === '' && !this.#owned) continue;
      await filter.then((f) => f.close(), () => {});
    }
    this.#loaded.clear();
  }
}
