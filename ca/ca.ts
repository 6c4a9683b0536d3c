import { createHash, createPublicKey, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateKeyPair, jwkThumbprint, parseSpiffeId, parseTrustDomain, toPem, type EcJwk } from '../spiffe/pki.ts';
import { createRoot, Issuer, randomSerial, verifyCsr } from './certs.ts';
import { CaError } from './errors.ts';
import { checkCaDirectory } from './permissions.ts';
import { writeSecretFile } from '../platform/secret-file.ts';
import { writeFileAtomic } from '../platform/files.ts';
import { isPostgres } from '../store/open.ts';
import { CaStore, type RenewalRefusal, type RenewalRules, type SvidRecord, type SvidRow } from './store.ts';
import type { IssuedSvid } from '../spiffe/svid.ts';

export type { IssuedSvid };

export const CA_FILES = { config: 'ca.json', key: 'ca-key.pem', root: 'ca.pem', bundle: 'bundle.pem', db: 'state.db' } as const;
/** SVIDs are backdated a little so a peer whose clock is slightly behind still accepts them. */
const BACKDATE_MS = 10_000;
const MIN_TTL_MS = 1_000;
/**
 * After a renewal the predecessor's key stays in the JWKS this long: fingerprints it signed
 * just before (30 s lifetime) still verify, and verifiers (5 s JWKS refresh) have learned
 * the new key by then.
 */
export const DEFAULT_SUPERSEDE_GRACE_MS = 60_000;
/** Renewals per SPIFFE ID and minute: a replica renews about twice per SVID lifetime. */
export const DEFAULT_RENEWALS_PER_MINUTE = 30;

/** Hex serial as stored and compared: lowercase, no separators, no leading zeros. */
export function normalizeSerial(hex: string): string {
  const clean = hex.replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{1,40}$/.test(clean)) throw new CaError(400, 'invalid_serial', 'serial must be hexadecimal (at most 20 bytes)');
  return clean.replace(/^0+(?=.)/, '');
}

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

export interface CaOptions {
  svidTtlMs?: number;
  supersedeGraceMs?: number;
  renewalsPerMinute?: number;
  /** Clock in ms; tests inject one to reach expiry without waiting. */
  now?: () => number;
  /** Where the state lives (store/open.ts syntax); default: the SQLite file in the CA directory. */
  store?: string;
}

interface CaConfig {
  trust_domain: string;
  /** Set when the state lives in a shared store (PostgreSQL) rather than the directory's SQLite file. */
  store?: 'postgres';
}

const rootFingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;
const configText = (config: CaConfig) => `${JSON.stringify(config, null, 2)}\n`;
const sharedStore = (spec: string | undefined): Pick<CaConfig, 'store'> => (spec && isPostgres(spec) ? { store: 'postgres' } : {});
const storeSpec = (dir: string, spec: string | undefined) => spec ?? `sqlite:${path.join(dir, CA_FILES.db)}`;

/**
 * Once a CA directory has been used with a shared store, it says so, and opening it without
 * one is refused: a revocation or a token written to the directory's own SQLite file would
 * look done and change nothing the servers see.
 */
function checkStoreChoice(configPath: string, config: CaConfig, spec: string | undefined): void {
  if (config.store && !sharedStore(spec).store) {
    throw new CaError(400, 'store_required', `this CA keeps its state in PostgreSQL (${configPath}); give --store postgres://…`);
  }
}

/**
 * The certificate authority over a state directory. One instance per process; other
 * processes (the CLI's admin commands) may open the same directory concurrently.
 */
export class CertificateAuthority {
  readonly trustDomain: string;
  readonly issuer: Issuer;
  readonly store: CaStore;
  readonly svidTtlMs: number;
  private readonly renewal: RenewalRules;
  private readonly now: () => number;

  /** Creates DIR with a new root, the key (0600), the trust bundle and an empty state store. */
  static async init(dir: string, trustDomain: string, options: Pick<CaOptions, 'store'> = {}): Promise<{ bundlePath: string }> {
    parseTrustDomain(trustDomain);
    if (existsSync(path.join(dir, CA_FILES.config))) throw new Error(`${dir} already holds a CA; refusing to overwrite it`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    checkCaDirectory(dir); // it may have existed, open to others
    const root = await createRoot(trustDomain);
    // Claimed before any file is written: a store of another CA leaves nothing behind.
    await (await CaStore.open(storeSpec(dir, options.store), rootFingerprint(root.certPem))).close();
    writeSecretFile(path.join(dir, CA_FILES.key), root.keyPem);
    writeFileSync(path.join(dir, CA_FILES.root), root.certPem, { flag: 'wx' });
    writeFileSync(path.join(dir, CA_FILES.bundle), root.certPem, { flag: 'wx' });
    // Written last: its presence marks a complete CA directory.
    writeFileSync(path.join(dir, CA_FILES.config), configText({ trust_domain: trustDomain, ...sharedStore(options.store) }), { flag: 'wx' });
    return { bundlePath: path.join(dir, CA_FILES.bundle) };
  }

  static async open(dir: string, options: CaOptions = {}): Promise<CertificateAuthority> {
    const configPath = path.join(dir, CA_FILES.config);
    if (!existsSync(configPath)) throw new Error(`${dir} is not a CA directory (run: palisade ca init --dir ${dir} --trust-domain TD)`);
    checkCaDirectory(dir);
    const keyPath = path.join(dir, CA_FILES.key);
    const mode = statSync(keyPath).mode & 0o777;
    if (mode & 0o077) {
      throw new Error(`CA key ${keyPath} is accessible by group or others (mode ${mode.toString(8)}); run: chmod 600 ${keyPath}`);
    }
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as CaConfig;
    const issuer = new Issuer(readFileSync(path.join(dir, CA_FILES.root), 'utf8'), readFileSync(keyPath, 'utf8'));
    checkStoreChoice(configPath, config, options.store);
    const store = await CaStore.open(storeSpec(dir, options.store), rootFingerprint(issuer.rootPem));
    if (!config.store && sharedStore(options.store).store) writeFileAtomic(configPath, configText({ ...config, ...sharedStore(options.store) }));
    return new CertificateAuthority(config.trust_domain, issuer, store, options);
  }

  private constructor(trustDomain: string, issuer: Issuer, store: CaStore, options: CaOptions) {
    this.trustDomain = trustDomain;
    this.issuer = issuer;
    this.store = store;
    this.svidTtlMs = Math.max(options.svidTtlMs ?? 3_600_000, MIN_TTL_MS);
    this.renewal = {
      graceMs: options.supersedeGraceMs ?? DEFAULT_SUPERSEDE_GRACE_MS,
      limit: options.renewalsPerMinute ?? DEFAULT_RENEWALS_PER_MINUTE,
      windowMs: 60_000,
    };
    this.now = options.now ?? Date.now;
  }

  /** A one-time join token bound to one SPIFFE ID; only its hash is stored. */
  async createToken(spiffeId: string, ttlMs: number): Promise<{ token: string; expiresAt: Date }> {
    this.checkOwnId(spiffeId);
    const token = `pjt_${randomBytes(32).toString('base64url')}`;
    const now = this.now();
    await this.store.addToken(hashToken(token), spiffeId, now, now + ttlMs);
    return { token, expiresAt: new Date(now + ttlMs) };
  }

  /** Token + CSR → SVID. Of concurrent joins with one token exactly one gets an SVID. */
  async join(token: unknown, csr: unknown): Promise<IssuedSvid> {
    if (typeof token !== 'string' || token.length === 0 || token.length > 256) throw new CaError(400, 'invalid_request', 'token must be a non-empty string');
    const hash = hashToken(token);
    const spiffeId = await this.checkToken(hash); // fail cheaply before spending a signature
    const request = verifyCsr(csr);
    this.checkRequestedIdentity(request.requestedUris, spiffeId);
    return this.issue(spiffeId, request, async (record) => {
      if (!(await this.store.consumeTokenAndRecord(hash, this.now(), record))) await this.checkToken(hash); // lost a race: say why
    });
  }

  /**
   * Renewal by the holder of a usable SVID (its certificate from the mTLS handshake). The
   * new SVID records it as predecessor and supersedes it: revoking any SVID of a lineage
   * revokes everything renewed from it, and a lineage keeps one key in the JWKS.
   */
  async renew(peer: X509Certificate | undefined, csr: unknown): Promise<IssuedSvid> {
    const { spiffeId, serial } = await this.authenticate(peer);
    await this.checkRenewalRate(spiffeId); // before spending a signature
    const request = verifyCsr(csr);
    this.checkRequestedIdentity(request.requestedUris, spiffeId);
    return this.issue(spiffeId, request, async (record) => {
      const refusal = await this.store.recordRenewal(record, serial, this.now(), this.renewal);
      if (refusal) throw this.renewalRefused(refusal, spiffeId); // revoked, renewed or rate limited meanwhile
    });
  }

  /** Issues an SVID with a key generated here (for workloads without an agent); the key is returned, not kept. */
  async mint(spiffeId: string, ttlMs: number): Promise<IssuedSvid & { key_pem: string }> {
    this.checkOwnId(spiffeId);
    const { privateKey } = await generateKeyPair();
    const publicKey = createPublicKey(privateKey);
    const key = { spki: publicKey.export({ type: 'spki', format: 'der' }), jwk: publicKey.export({ format: 'jwk' }) as unknown as EcJwk };
    const svid = await this.issue(spiffeId, key, (record) => this.store.recordSvid(record, this.now()), ttlMs);
    return { ...svid, key_pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
  }

  /** Revokes the SVID and its lineage: every SVID renewed from it, transitively. */
  async revoke(serialHex: string): Promise<void> {
    const serial = normalizeSerial(serialHex);
    if (!(await this.store.revokeLineage(serial, this.now()))) throw new CaError(404, 'unknown_serial', `no SVID with serial ${serial} was issued by this CA`);
  }

  /** Revokes every unexpired SVID of an identity; how many were newly revoked. */
  revokeIdentity(spiffeId: string): Promise<number> {
    this.checkOwnId(spiffeId);
    return this.store.revokeIdentity(spiffeId, this.now());
  }

  /** Every SVID this CA issued (to one identity): serial, lineage, validity, status. */
  svids(spiffeId?: string): Promise<SvidRow[]> {
    if (spiffeId !== undefined) this.checkOwnId(spiffeId);
    return this.store.list(this.now(), spiffeId);
  }

  /**
   * JWKS of the public keys of all usable SVIDs (unexpired, unrevoked, not superseded for
   * longer than the grace); kid = RFC 7638 thumbprint. Read from the store on every call.
   */
  async liveJwks(): Promise<{ keys: object[] }> {
    return { keys: await this.store.liveKeys(this.now(), this.renewal.graceMs) };
  }

  /** The trust bundle in the SPIFFE bundle format (JWKS with `use: x509-svid`). */
  bundleJwks(): object {
    const root = new X509Certificate(this.issuer.rootPem);
    const jwk = root.publicKey.export({ format: 'jwk' });
    return { keys: [{ ...jwk, use: 'x509-svid', x5c: [root.raw.toString('base64')] }] };
  }

  close(): Promise<void> {
    return this.store.close();
  }

  private async issue(spiffeId: string, key: { spki: Buffer; jwk: EcJwk }, record: (svid: SvidRecord) => Promise<void>, ttlMs = this.svidTtlMs): Promise<IssuedSvid> {
    const { spki, jwk } = key;
    const now = this.now();
    const notBefore = new Date(Math.floor((now - BACKDATE_MS) / 1000) * 1000);
    const rootExpiry = new Date(this.issuer.root.notAfter).getTime();
    const notAfter = new Date(Math.floor(Math.min(now + Math.max(ttlMs, MIN_TTL_MS), rootExpiry) / 1000) * 1000);
    const serialBytes = randomSerial();
    const der = this.issuer.signSvid({ serial: serialBytes, spiffeId, spki, notBefore, notAfter });
    const serial = normalizeSerial(serialBytes.toString('hex'));
    const publicJwk = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, kid: jwkThumbprint(jwk), alg: 'ES256', use: 'sig' };
    await record({ serial, spiffeId, notBefore: notBefore.getTime(), notAfter: notAfter.getTime(), jwk: JSON.stringify(publicJwk), kid: publicJwk.kid });
    return {
      spiffe_id: spiffeId,
      serial,
      not_before: notBefore.toISOString(),
      not_after: notAfter.toISOString(),
      svid_pem: toPem(der),
      bundle_pem: this.issuer.rootPem,
    };
  }

  /** The SPIFFE ID a valid token is bound to, or the CaError saying why the token is unusable. */
  private async checkToken(hash: string): Promise<string> {
    const { state, spiffeId } = await this.store.tokenState(hash, this.now());
    if (state === 'valid') return spiffeId!;
    if (state === 'used') throw new CaError(401, 'token_used', 'join token has already been used');
    if (state === 'expired') throw new CaError(401, 'token_expired', 'join token has expired');
    throw new CaError(401, 'token_unknown', 'join token is not known to this CA');
  }

  private checkRequestedIdentity(requested: string[], assigned: string): void {
    if (requested.length > 1 || (requested.length === 1 && requested[0] !== assigned)) {
      throw new CaError(403, 'identity_mismatch', `csr asks for ${requested.join(', ')} but this credential is for ${assigned}`);
    }
  }

  /** Verifies the caller's mTLS certificate against the root and the CA's own records. */
  private async authenticate(peer: X509Certificate | undefined): Promise<{ spiffeId: string; serial: string }> {
    if (!peer) throw new CaError(401, 'client_certificate_required', 'renewal requires the current SVID as TLS client certificate');
    const root = new X509Certificate(this.issuer.rootPem);
    if (!peer.checkIssued(root) || !peer.verify(root.publicKey)) {
      throw new CaError(401, 'client_certificate_invalid', 'client certificate was not issued by this CA');
    }
    const now = this.now();
    if (now < Date.parse(peer.validFrom) || now >= Date.parse(peer.validTo)) throw this.renewalRefused('expired', '');
    const serial = normalizeSerial(peer.serialNumber);
    const record = await this.store.svid(serial, now, this.renewal.graceMs);
    if (!record) throw new CaError(401, 'client_certificate_invalid', 'client certificate is not a recorded SVID of this CA');
    if (!record.usable) throw this.renewalRefused(record.status as RenewalRefusal, record.spiffeId);
    if (peer.subjectAltName !== `URI:${record.spiffeId}`) throw new CaError(401, 'client_certificate_invalid', 'client certificate identity does not match the issued SVID');
    return { spiffeId: record.spiffeId, serial };
  }

  private async checkRenewalRate(spiffeId: string): Promise<void> {
    if (await this.store.renewalsSince(spiffeId, this.now() - this.renewal.windowMs) >= this.renewal.limit) throw this.renewalRefused('rate_limited', spiffeId);
  }

  private renewalRefused(refusal: RenewalRefusal, spiffeId: string): CaError {
    switch (refusal) {
      case 'revoked':
        return new CaError(401, 'svid_revoked', 'client certificate has been revoked (itself or an SVID it was renewed from)');
      case 'expired':
        return new CaError(401, 'svid_expired', 'client certificate is expired or not yet valid');
      case 'superseded':
        return new CaError(401, 'svid_superseded', 'client certificate was renewed and its grace has ended; renew from the newest SVID');
      case 'rate_limited':
        return new CaError(429, 'renewal_rate_limited', `${spiffeId} renewed ${this.renewal.limit} times in the last minute; retry later`, this.renewal.windowMs / 1000);
    }
  }

  private checkOwnId(spiffeId: string): void {
    let parsed;
    try {
      parsed = parseSpiffeId(spiffeId);
    } catch (err) {
      throw new CaError(400, 'invalid_spiffe_id', (err as Error).message);
    }
    if (parsed.trustDomain !== this.trustDomain || parsed.path === '') {
      throw new CaError(400, 'invalid_spiffe_id', `SPIFFE ID must be a workload in trust domain ${this.trustDomain} (spiffe://${this.trustDomain}/...)`);
    }
  }
}
