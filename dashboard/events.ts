/**
 * Server-sent events for the pane: `decisions` (how many arrived, at most once a second, so
 * 50,000 decisions a minute are still one small event per second) and `policy` (a policy
 * changed, through this replica or any other on the store). The page re-reads what it shows;
 * events carry no data beyond names and counts. At most MAX_CLIENTS streams at once.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { Store } from '../store/store.ts';
import { ControlError } from '../control/errors.ts';

const MAX_CLIENTS = 100;
const THROTTLE_MS = 1_000;
const PING_MS = 15_000;

export class LiveEvents {
  readonly #clients = new Set<ServerResponse>();
  readonly #ping: NodeJS.Timeout;
  #pending = 0;
  #timer: NodeJS.Timeout | undefined;
  #unlisten: (() => Promise<void>) | undefined;

  private constructor() {
    // A comment line keeps proxies and the browser from timing the stream out.
    this.#ping = setInterval(() => this.#write(': ping\n\n'), PING_MS).unref();
  }

  static async start(store: Store, policyChannel: string): Promise<LiveEvents> {
    const events = new LiveEvents();
    events.#unlisten = await store.listen(policyChannel, (name) => events.#send('policy', { name }));
    return events;
  }

  subscribe(request: FastifyRequest, reply: FastifyReply): void {
    if (this.#clients.size >= MAX_CLIENTS) throw new ControlError(503, 'too_many_streams', `at most ${MAX_CLIENTS} live views at once`);
    reply.hijack();
    const out = reply.raw;
    out.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    out.write(': connected\n\n');
    this.#clients.add(out);
    request.raw.on('close', () => this.#clients.delete(out));
  }

  decisions(added: number): void {
    if (added === 0) return;
    this.#pending += added;
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#send('decisions', { added: this.#pending });
      this.#pending = 0;
    }, THROTTLE_MS).unref();
  }

  async close(): Promise<void> {
    clearInterval(this.#ping);
    clearTimeout(this.#timer);
    await this.#unlisten?.();
    for (const out of this.#clients) out.end();
  }

  #send(event: string, data: object): void {
    this.#write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  #write(chunk: string): void {
    for (const out of this.#clients) if (!out.writableEnded) out.write(chunk);
  }
}
