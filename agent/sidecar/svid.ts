import { EventEmitter } from 'node:events';
import { createPrivateKey, type KeyObject } from 'node:crypto';

/** The workload's current X.509-SVID, held in memory only. */
export interface Svid {
  spiffeId: string;
  /** Leaf first, then any intermediates (PEM). */
  chainPem: string;
  /** The SVID's private key (ECDSA P-256: fingerprints are ES256). */
  key: KeyObject;
  notAfter: Date;
}

/**
 * What the sidecar needs from the agent: the current SVID, the trust bundle, and a
 * 'rotated' event after which `svid()` returns the new one. The agent (agent/identity)
 * provides this; tests use `SvidHolder`.
 */
export interface SvidSource {
  svid(): Svid;
  bundlePem(): string;
  on(event: 'rotated', listener: () => void): unknown;
  off(event: 'rotated', listener: () => void): unknown;
}

/** An in-memory SvidSource whose SVID is replaced by `rotate`. */
export class SvidHolder extends EventEmitter implements SvidSource {
  #svid: Svid;
  constructor(svid: Svid, readonly bundle: string) {
    super();
    this.#svid = svid;
  }
  svid(): Svid {
    return this.#svid;
  }
  bundlePem(): string {
    return this.bundle;
  }
  rotate(next: Svid): void {
    this.#svid = next;
    this.emit('rotated');
  }
}

/** Accepts the key as PEM text or a KeyObject, as the agent may hold either. */
export function toKeyObject(key: KeyObject | string): KeyObject {
  return typeof key === 'string' ? createPrivateKey(key) : key;
}
