import { EventEmitter } from 'node:events';
import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { Counter, Gauge, Registry } from '../metrics.ts';
import { createCsr, generateKeyPair, pemBlocks } from '../../spiffe/pki.ts';
import { isoTime } from '../../platform/utc-time.ts';
import { CaRejectedError, CaUnavailableError, fetchLiveKeyIds, postToCa, type SvidResponse } from './client.ts';

/** The workload's current X.509-SVID. The key exists only in this process's memory. */
export interface Svid {
  spiffeId: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** Leaf first, PEM. */
  chainPem: string;
  keyPem: string;
  privateKey: KeyObject;
  certificate: X509Certificate;
}

export type HealthStatus = 'ok' | 'degraded' | 'expired';

export interface AgentHealth {
  /** ok: valid SVID, renewals succeed; degraded: valid SVID, renewals failing; expired: no valid SVID. */
  status: HealthStatus;
  spiffeId: string;
  serial: string;
  notAfter: string;
  nextRotation: string | null;
  consecutiveFailures: number;
  lastError: string | null;
}

export interface AgentOptions {
  caUrl: string;
  /** PEM trust bundle: verifies the CA's TLS certificate and every SVID it hands out. */
  bundlePem: string;
  token: string;
  /** Attempts to reach the CA at bootstrap before giving up (default 5). */
  bootstrapAttempts?: number;
  /** First retry delay; doubles per failure up to `maxBackoffMs`, with jitter (defaults 500 ms, 30 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface AgentEvents {
  rotated: [Svid];
  renewal_failed: [Error];
  expired: [Svid];
}

const METRIC_HELP = {
  expiry: 'Unix time (seconds) at which the current SVID expires',
  rotations: 'SVID rotations completed',
  failures: 'Failed SVID renewal attempts',
  healthy: '1 while the agent holds a valid SVID, else 0',
};

/**
 * Holds the workload's identity: joins the CA once with a join token, then renews at half
 * of each SVID's lifetime (±10% jitter) with a fresh key, retrying with exponential backoff
 * while the CA is away and serving the current SVID until it expires.
 */
export class IdentityAgent extends EventEmitter<AgentEvents> {
  readonly metrics = new Registry();
  private current: Svid;
  private readonly bundle: string[];
  private timer: NodeJS.Timeout | undefined;
  private nextRotation: number | null = null;
  private failures = 0;
  private lastError: string | null = null;
  private closed = false;
  private readonly gauges;

  private constructor(
    private readonly options: AgentOptions,
    first: Svid,
  ) {
    super();
    const agent = this;
    this.current = first;
    this.bundle = pemBlocks(options.bundlePem);
    this.gauges = {
      expiry: new Gauge({ name: 'palisade_agent_svid_expiry_timestamp_seconds', help: METRIC_HELP.expiry, registers: [this.metrics] }),
      rotations: new Counter({ name: 'palisade_agent_svid_rotations_total', help: METRIC_HELP.rotations, registers: [this.metrics] }),
      failures: new Counter({ name: 'palisade_agent_svid_renewal_failures_total', help: METRIC_HELP.failures, registers: [this.metrics] }),
      healthy: new Gauge({ name: 'palisade_agent_svid_healthy', help: METRIC_HELP.healthy, registers: [this.metrics],
        collect(this: Gauge) {
          this.set(agent.health().status === 'expired' ? 0 : 1);
        },
      }),
    };
    this.install(first);
  }

  /** Joins the CA (retrying only while it is unreachable) and starts the rotation schedule. */
  static async start(options: AgentOptions): Promise<IdentityAgent> {
    const bundle = pemBlocks(options.bundlePem);
    if (bundle.length === 0) throw new Error('trust bundle contains no PEM certificate');
    bundle.forEach((pem) => new X509Certificate(pem)); // unparsable bundle: fail now, clearly
    const attempts = options.bootstrapAttempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      try {
        const first = await requestSvid(options, '/v1/join', { token: options.token }, undefined, bundle);
        return new IdentityAgent(options, first);
      } catch (err) {
        if (!(err instanceof CaUnavailableError) || attempt >= attempts) {
          if (err instanceof CaUnavailableError) throw new CaUnavailableError(`${err.message}; gave up after ${attempts} attempts`);
          throw err;
        }
        await sleep(backoff(attempt, options));
      }
    }
  }

  svid(): Svid {
    return this.current;
  }

  trustBundle(): string[] {
    return [...this.bundle];
  }

  health(): AgentHealth {
    const expired = Date.now() >= this.current.notAfter.getTime();
    return {
      status: expired ? 'expired' : this.failures > 0 ? 'degraded' : 'ok',
      spiffeId: this.current.spiffeId,
      serial: this.current.serial,
      notAfter: isoTime(this.current.notAfter),
      nextRotation: this.nextRotation === null ? null : isoTime(this.nextRotation),
      consecutiveFailures: this.failures,
      lastError: this.lastError,
    };
  }

  /** Key ids of the CA's live JWKS, over the same verified TLS as renewals (for the sidecar's revocation check). */
  liveKeyIds(): Promise<string[]> {
    return fetchLiveKeyIds(this.options.caUrl, this.options.bundlePem);
  }

  /** Renews now instead of waiting for the schedule (admin use, tests). */
  async rotate(): Promise<Svid> {
    const next = await requestSvid(this.options, '/v1/renew', {}, this.current, this.bundle);
    if (next.spiffeId !== this.current.spiffeId) throw new Error(`CA renewed ${this.current.spiffeId} as ${next.spiffeId}`);
    if (this.closed) return next;
    this.install(next);
    this.gauges.rotations.inc();
    this.emit('rotated', next);
    return next;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.nextRotation = null;
  }

  private install(svid: Svid): void {
    this.current = svid;
    this.failures = 0;
    this.lastError = null;
    this.gauges.expiry.set(svid.notAfter.getTime() / 1000);
    const now = Date.now();
    const halfLife = (svid.notAfter.getTime() - now) / 2;
    this.schedule(halfLife * (0.9 + Math.random() * 0.2));
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    if (this.closed) return;
    this.nextRotation = Date.now() + delayMs;
    this.timer = setTimeout(() => void this.attempt(), Math.max(0, delayMs));
    this.timer.unref();
  }

  private async attempt(): Promise<void> {
    try {
      await this.rotate();
    } catch (err) {
      if (this.closed) return;
      this.failures++;
      this.lastError = (err as Error).message;
      this.gauges.failures.inc();
      this.emit('renewal_failed', err as Error);
      const remaining = this.current.notAfter.getTime() - Date.now();
      if (remaining <= 0) {
        this.nextRotation = null;
        this.emit('expired', this.current); // renewal needs a valid SVID: only a new join token helps now
        return;
      }
      // Retry before expiry even when the backoff has grown past the remaining lifetime.
      this.schedule(Math.min(backoff(this.failures, this.options), Math.max(100, remaining / 3)));
    }
  }
}

export function startAgent(options: AgentOptions): Promise<IdentityAgent> {
  return IdentityAgent.start(options);
}

/** Exponential backoff with jitter: attempt n waits between 50% and 100% of initial·2^(n−1), capped. */
function backoff(attempt: number, options: AgentOptions): number {
  const ceiling = Math.min(options.maxBackoffMs ?? 30_000, (options.initialBackoffMs ?? 500) * 2 ** (attempt - 1));
  return ceiling * (0.5 + Math.random() * 0.5);
}

/** New key, CSR, CA call, and every check that the answer is the SVID we asked for. */
async function requestSvid(options: AgentOptions, path: string, body: object, current: Svid | undefined, bundle: string[]): Promise<Svid> {
  const { privateKey } = await generateKeyPair();
  const csr = createCsr(privateKey);
  const response = await postToCa(options.caUrl, options.bundlePem, path, { ...body, csr }, current);
  return acceptSvid(response, privateKey, bundle);
}

function acceptSvid(response: SvidResponse, privateKey: KeyObject, bundle: string[]): Svid {
  const chain = pemBlocks(String(response.svid_pem ?? ''));
  if (chain.length === 0) throw new CaRejectedError(200, 'bad_response', 'CA response carries no certificate');
  const certificate = new X509Certificate(chain[0]!);
  const issuedByBundle = bundle.some((pem) => {
    const root = new X509Certificate(pem);
    return certificate.checkIssued(root) && certificate.verify(root.publicKey);
  });
  const ownKey = createPublicKey(privateKey).export({ type: 'spki', format: 'der' }).equals(certificate.publicKey.export({ type: 'spki', format: 'der' }));
  if (!issuedByBundle || !ownKey || certificate.subjectAltName !== `URI:${response.spiffe_id}`) {
    throw new CaRejectedError(200, 'bad_response', 'CA returned a certificate that does not match the request or the trust bundle');
  }
  return {
    spiffeId: response.spiffe_id,
    serial: response.serial,
    notBefore: new Date(certificate.validFrom),
    notAfter: new Date(certificate.validTo),
    chainPem: chain.join(''),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    privateKey,
    certificate,
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
