/**
 * The embedded sidecar fed by the control plane: the first verified filter starts it (its
 * inbound listener never opens without a filter: fail closed), every later one goes through
 * its hot reload, which keeps requests in flight on the filter they started with.
 */
import type { Sidecar } from '../sidecar/index.ts';
import type { ApplyOutcome, VerifiedFilter } from './subscriber.ts';

export class ControlledSidecar {
  #sidecar: Sidecar | undefined;
  #started: (sidecar: Sidecar) => void = () => {};
  /** Resolves once the first filter has started the sidecar. */
  readonly ready = new Promise<Sidecar>((resolve) => (this.#started = resolve));

  /** `start` starts the sidecar with its first filter; it throws (and the filter is refused) when it cannot. */
  constructor(private readonly start: (filter: { wasm: Uint8Array; source: string }) => Promise<Sidecar>) {}

  /** A `SubscriberOptions.apply`. */
  readonly apply = async (filter: VerifiedFilter): Promise<ApplyOutcome> => {
    const source = `control ${filter.policy} v${filter.version}`;
    if (this.#sidecar) return this.#sidecar.filters!.replace(filter.wasm, source);
    this.#sidecar = await this.start({ wasm: filter.wasm, source });
    this.#started(this.#sidecar);
    return { ok: true };
  };

  async close(): Promise<void> {
    await this.#sidecar?.close();
  }
}
