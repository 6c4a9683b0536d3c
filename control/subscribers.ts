/**
 * The agents subscribed to this replica, by the service their SVID stands for, and the
 * pushes to them. Every replica listens to the store's change channel: a change committed
 * through any replica reaches every stream of the services it touches, here and elsewhere.
 */
import type { ServerResponse } from 'node:http';
import type { Store } from '../store/store.ts';
import { PING_INTERVAL_MS, type PushedFilter, type StreamMessage } from '../agent/control/protocol.ts';
import { CHANGES_CHANNEL, type PolicyRegistry } from './policies.ts';

interface Subscriber {
  service: string;
  out: ServerResponse;
  /** What it was last sent, so a change that does not touch it sends nothing. */
  sent: PushedFilter | null;
}

export class Subscribers {
  readonly #byService = new Map<string, Set<Subscriber>>();
  readonly #ping: NodeJS.Timeout;
  #unlisten: (() => Promise<void>) | undefined;
  /** Changes are pushed one at a time, in the order they were announced. */
  #queue: Promise<void> = Promise.resolve();

  private constructor(private readonly policies: PolicyRegistry, private readonly onError: (err: Error) => void) {
    this.#ping = setInterval(() => this.#each((s) => send(s, { type: 'ping' })), PING_INTERVAL_MS).unref();
  }

  static async start(store: Store, policies: PolicyRegistry, onError: (err: Error) => void): Promise<Subscribers> {
    const subscribers = new Subscribers(policies, onError);
    // Notifications lost while the store's connection was down: every stream is re-read.
    subscribers.#unlisten = await store.listen(CHANGES_CHANNEL, (name) => subscribers.#changed(name), () => subscribers.#refreshAll());
    return subscribers;
  }

  get count(): number {
    let n = 0;
    for (const set of this.#byService.values()) n += set.size;
    return n;
  }

  /**
   * Streams the current filter of `service` to `out`, then every change to it, until `out`
   * closes. Queued with the changes, so a change committed meanwhile is never overtaken by
   * the older state read here.
   */
  add(service: string, out: ServerResponse): Promise<void> {
    const subscriber: Subscriber = { service, out, sent: null };
    const set = this.#byService.get(service) ?? this.#byService.set(service, new Set()).get(service)!;
    set.add(subscriber);
    out.on('close', () => {
      set.delete(subscriber);
      if (set.size === 0 && this.#byService.get(service) === set) this.#byService.delete(service);
    });
    return this.#enqueue(async () => {
      const filter = await this.policies.filterFor(service);
      subscriber.sent = filter;
      send(subscriber, { type: 'filter', filter });
    });
  }

  async close(): Promise<void> {
    clearInterval(this.#ping);
    await this.#unlisten?.();
    this.#each((s) => s.out.end());
  }

  #changed(name: string): void {
    this.#enqueue(() => this.#push(name)).catch((err: Error) => this.onError(err));
  }

  #refreshAll(): void {
    for (const service of [...this.#byService.keys()]) this.#enqueue(() => this.#refresh(service)).catch((err: Error) => this.onError(err));
  }

  #enqueue(work: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(work);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Refreshes the service the policy protects now and any stream that was sent this policy (its service may have changed). */
  async #push(name: string): Promise<void> {
    const services = new Set<string>();
    const service = await this.policies.serviceOf(name);
    if (service) services.add(service);
    for (const [s, set] of this.#byService) for (const sub of set) if (sub.sent?.policy === name) services.add(s);
    for (const s of services) await this.#refresh(s);
  }

  /** Sends the current filter of `service` to each of its streams that was sent something else. */
  async #refresh(service: string): Promise<void> {
    const set = this.#byService.get(service);
    if (!set?.size) return;
    const filter = await this.policies.filterFor(service);
    for (const sub of set) {
      if (sub.sent?.sha256 === filter?.sha256 && sub.sent?.version === filter?.version) continue;
      sub.sent = filter;
      send(sub, { type: 'filter', filter });
    }
  }

  #each(fn: (s: Subscriber) => void): void {
    for (const set of this.#byService.values()) for (const s of set) fn(s);
  }
}

function send(s: Subscriber, message: StreamMessage): void {
  if (!s.out.writableEnded) s.out.write(`${JSON.stringify(message)}\n`);
}
