/**
 * Offline X.509 checks for the audit verifier: a certificate chain (leaf first) that leads
 * to a root of the trust bundle and was valid at a given moment, and the SVID's one SPIFFE
 * ID. Evidence is judged at the time it was made, so a log outlives the SVIDs that wrote it.
 */
import { X509Certificate } from 'node:crypto';
import { pemBlocks, uriSans } from '../spiffe/pki.ts';

export class ChainError extends Error {}

/** Returns the leaf of `chainPem` after checking the chain to `bundle` at `at`; throws ChainError with the reason. */
export function verifyChainAt(chainPem: string, bundle: X509Certificate[], at: Date): X509Certificate {
  return new CheckedChain(chainPem, bundle).at(at);
}

/**
 * A chain (leaf first) parsed and its signatures checked to the bundle once, for the many
 * moments it is judged at (every checkpoint an SVID signed stores the same chain).
 */
export class CheckedChain {
  readonly leaf: X509Certificate;
  readonly #validity: { serial: string; from: Date; to: Date }[];
  /** Why the chain does not lead to the bundle, if it does not: reported after its validity, as ever. */
  readonly #unissued: string | undefined;

  constructor(chainPem: string, bundle: X509Certificate[]) {
    const chain = pemBlocks(chainPem).map((pem) => new X509Certificate(pem));
    if (chain.length === 0) throw new ChainError('no certificate');
    this.leaf = chain[0]!;
    this.#validity = chain.map((cert) => ({ serial: cert.serialNumber, from: new Date(cert.validFrom), to: new Date(cert.validTo) }));
    const unissued = chain.findIndex((cert, i) => i + 1 < chain.length && !issued(cert, chain[i + 1]!));
    const last = chain.at(-1)!;
    if (unissued >= 0) this.#unissued = `certificate ${chain[unissued]!.serialNumber} is not issued by the next one in its chain`;
    else if (!bundle.some((root) => issued(last, root))) this.#unissued = `certificate ${last.serialNumber} is not issued by the trust bundle`;
  }

  /** The leaf, if the chain was valid at `at` and leads to the bundle; throws ChainError with the reason. */
  at(at: Date): X509Certificate {
    for (const { serial, from, to } of this.#validity) {
      if (at < from || at > to) throw new ChainError(`certificate ${serial} was not valid at ${at.toISOString()} (valid ${from.toISOString()} to ${to.toISOString()})`);
    }
    if (this.#unissued !== undefined) throw new ChainError(this.#unissued);
    return this.leaf;
  }
}

function issued(cert: X509Certificate, by: X509Certificate): boolean {
  return cert.checkIssued(by) && cert.verify(by.publicKey);
}

/** The SVID's SPIFFE ID: its one URI SAN; null when it has none, several, or a name that needs quoting. */
export function spiffeIdOfCert(cert: X509Certificate): string | null {
  try {
    const uris = uriSans(cert);
    return uris.length === 1 ? uris[0]! : null;
  } catch {
    return null;
  }
}

export function loadBundle(pem: string): X509Certificate[] {
  const roots = pemBlocks(pem).map((block) => new X509Certificate(block));
  if (roots.length === 0) throw new ChainError('the trust bundle holds no PEM certificate');
  return roots;
}
