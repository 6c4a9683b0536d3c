/**
 * The agent's side of the control plane: one long-lived stream (protocol.ts) to one of the
 * control plane's replicas, authenticated both ways by SVID. Every filter pushed is checked
 * against its pinned sha256 before anything loads it, applied through `apply` (the sidecar's
 * hot reload, or the ECDS relay), and reported applied or refused. When the stream ends or
 * fails the agent goes on to the next replica in its list at once, then backs off; the
 * sidecar keeps enforcing what it runs meanwhile. After an SVID rotation the stream is
 * reopened with the new certificate.
 */
import { createHash, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Pool } from '../undici.ts';
import type { SvidSource } from '../sidecar/svid.ts';
import { controlConnect, controlIdOf } from './connect.ts';
import {
  AGENT_INSTANCE_HEADER, PING_INTERVAL_MS, REPORTS_PATH, STREAM_PATH,
  type PushedFilter, type Report, type StreamMessage,
} from './protocol.ts';

/** A pushed filter whose bytes matched their pinned sha256. */
export interface VerifiedFilter {
  policy: string;
  version: number;
  sha256: string;
  wasm: Uint8Array;
}

export type ApplyOutcome = { ok: true } | { ok: false; reason: string };

export interface SubscriberOptions {
  /** The control plane's replicas, tried in order. */
  urls: string[];
  identity: SvidSource;
  /** The SPIFFE ID the control plane must present (default spiffe://<trust domain>/palisade/control). */
  controlId?: string;
  /** Names this process in rollout reports (default: a new random id). */
  instance?: string;
  apply(filter: VerifiedFilter): Promise<ApplyOutcome>;
  log?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** Delay before retrying once every replica failed in a row; doubles up to `maxRetryMs` (defaults 200 ms, 5 s). */
  retryMs?: number;
  maxRetryMs?: number;
}

export interface SubscriberEvents {
  /** Every report sent (or that could not be sent: the next stream's first message repeats the state). */
  reported: [Report];
  connected: [string];
  disconnected: [string, Error | undefined];
}

export class ControlSubscriber extends EventEmitter<SubscriberEvents> {
  readonly instance: string;
  readonly #opts: SubscriberOptions;
  readonly #controlId: string;
  #pool: Pool | undefined;
  #closed = false;
  #running: { policy: string; version: number; sha256: string } | undefined;
  #connectedTo: string | undefined;
  #loop: Promise<void> | undefined;

  constructor(opts: SubscriberOptions) {
    super();
    if (opts.urls.length === 0) throw new Error('the control plane needs at least one URL');
    this.#opts = opts;
    this.instance = opts.instance ?? randomUUID();
    this.#controlId = controlIdOf(opts.identity, opts.controlId);
    opts.identity.on('rotated', this.#reconnect);
  }

  /** The SPIFFE ID the control plane must present. */
  get controlId(): string {
    return this.#controlId;
  }

  /** What this agent runs from the control plane, if anything yet. */
  get running() {
    return this.#running && { ...this.#running };
  }

  /** The replica whose stream is open now, if any. */
  get connectedTo(): string | undefined {
    return this.#connectedTo;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#opts.identity.off('rotated', this.#reconnect);
    await this.#pool?.destroy().catch(() => {});
    await this.#loop;
  }

  readonly #reconnect = () => void this.#pool?.destroy().catch(() => {});

  async #run(): Promise<void> {
    const { urls } = this.#opts;
    let failuresInARow = 0;
    for (let i = 0; !this.#closed; i = (i + 1) % urls.length) {
      const url = urls[i]!;
      const received = await this.#subscribe(url);
      failuresInARow = received ? 0 : failuresInARow + 1;
      // Another replica right away; a pause only once all of them failed in a row.
      if (failuresInARow >= urls.length && !this.#closed) {
        const base = this.#opts.retryMs ?? 200;
        await sleep(Math.min(this.#opts.maxRetryMs ?? 5000, base * 2 ** Math.min(10, failuresInARow - urls.length)));
      }
    }
  }

  /** One stream to one replica, until it ends; whether it delivered anything. */
  async #subscribe(url: string): Promise<boolean> {
    const pool = (this.#pool = new Pool(new URL(url).origin, {
      connections: 2, // the stream, and the reports beside it
      bodyTimeout: 3 * PING_INTERVAL_MS,
      headersTimeout: 10_000,
      connect: controlConnect(this.#opts.identity, this.#controlId),
    }));
    let received = false;
    let error: Error | undefined;
    try {
      const response = await pool.request({ path: STREAM_PATH, method: 'GET', headers: { [AGENT_INSTANCE_HEADER]: this.instance } });
      if (response.statusCode !== 200) {
        const text = await response.body.text();
        throw new Error(`control plane answered ${response.statusCode}: ${text.slice(0, 300)}`);
      }
      this.#connectedTo = url;
      this.emit('connected', url);
      let buffered = '';
      for await (const chunk of response.body) {
        buffered += chunk.toString();
        let end: number;
        while ((end = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, end);
          buffered = buffered.slice(end + 1);
          received = true;
          await this.#handle(JSON.parse(line) as StreamMessage, pool);
        }
      }
    } catch (err) {
      error = err as Error;
    } finally {
      this.#connectedTo = undefined;
      void pool.destroy().catch(() => {});
    }
    if (!this.#closed) {
      this.#opts.log?.warn({ control: url, err: error?.message ?? 'stream ended' }, 'control plane stream lost; reconnecting');
      this.emit('disconnected', url, error);
    }
    return received;
  }

  async #handle(message: StreamMessage, pool: Pool): Promise<void> {
    if (message.type !== 'filter') return;
    const pushed = message.filter;
    if (!pushed) {
      this.#opts.log?.info({ spiffe_id: this.#opts.identity.svid().spiffeId }, 'no policy protects this service on the control plane yet');
      return;
    }
    const outcome = await this.#verifyAndApply(pushed);
    const report: Report = { policy: pushed.policy, version: pushed.version, sha256: pushed.sha256, status: outcome.ok ? 'applied' : 'refused' };
    if (!outcome.ok) report.reason = outcome.reason;
    if (outcome.ok) this.#running = { policy: pushed.policy, version: pushed.version, sha256: pushed.sha256 };
    else this.#opts.log?.warn({ policy: pushed.policy, version: pushed.version, reason: outcome.reason }, 'filter from the control plane refused');
    try {
      const response = await pool.request({
        path: REPORTS_PATH, method: 'POST',
        headers: { 'content-type': 'application/json', [AGENT_INSTANCE_HEADER]: this.instance },
        body: JSON.stringify(report),
      });
      await response.body.dump();
    } catch (err) {
      this.#opts.log?.warn({ err: (err as Error).message }, 'rollout report not delivered; the next stream repeats it');
    }
    this.emit('reported', report);
  }

  async #verifyAndApply(pushed: PushedFilter): Promise<ApplyOutcome> {
    const wasm = Buffer.from(pushed.wasm, 'base64');
    const actual = createHash('sha256').update(wasm).digest('hex');
    if (actual !== pushed.sha256) return { ok: false, reason: `sha256_mismatch: pinned ${pushed.sha256}, received bytes hash to ${actual}` };
    // The same bytes again (a reconnect, a rollback to what runs): nothing to load, still reported.
    if (actual === this.#running?.sha256) return { ok: true };
    try {
      return await this.#opts.apply({ policy: pushed.policy, version: pushed.version, sha256: actual, wasm });
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());
