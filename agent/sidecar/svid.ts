import { EventEmitter } from 'node:events';
import type { KeyObject } from 'node:crypto';

/** The workload's current X.509-SVID, held in memory only (agent/identity's Svid fits). */
export interface Svid {
  spiffeId: string;
  /** Leaf first, then any intermediates (PEM). */
  chainPem: string;
  /** The SVID's private key (ECDSA P-256: fingerprints are ES256). */
  privateKey: KeyObject;
  notAfter: Date;
}

/**
 * What the sidecar needs from the agent: the current SVID, the trust bundle, the CA's live
 * keys, and a 'rotated' event after which `svid()` returns the new one. agent/identity's IdentityAgent
 * is one; tests use `SvidHolder`.
 */
export interface SvidSource {
  svid(): Svid;
  /** Trust bundle: PEM root certificates. */
  trustBundle(): string[];
  /**
   * Key ids (RFC 7638) of the CA's live JWKS. The agent has it; without it (a PKI and no CA,
   * as in tests) the inbound side cannot learn of revocations.
   */
  liveKeyIds?(): Promise<string[]>;
  on(event: 'rotated', listener: () => void): unknown;
  off(event: 'rotated', listener: () => void): unknown;
}

/** An in-memory SvidSource whose SVID is replaced by `rotate`. */
export class SvidHolder extends EventEmitter implements SvidSource {
  #svid: Svid;
  constructor(svid: Svid, private readonly bundle: string) {
    super();
    this.#svid = svid;
  }
  svid(): Svid {
    return this.#svid;
  }
  trustBundle(): string[] {
    return [this.bundle];
  }
  rotate(next: Svid): void {
    this.#svid = next;
    this.emit('rotated');
  }
}
