/**
 * A helper thread of `palisade audit verify` (audit/helpers.ts): checks the runs of entry
 * lines the main thread sends it (audit/entry-runs.ts), fingerprint signatures included
 * when asked, one after another (node:crypto's synchronous ECDSA P-256 verify), and answers
 * each with the run's leaf hashes and its first failure.
 */
import { parentPort } from 'node:worker_threads';
import { verified } from '../spiffe/fingerprint.ts';
import { loadBundle } from './chain.ts';
import { FingerprintEvidence, type SignatureCheck } from './evidence.ts';
import { EntryChecker, storedCertificate, type EntryRun } from './entry-runs.ts';

/** What every run of a log is checked with: sent before its runs. */
export interface HelperSetup {
  dir: string;
  bundlePem: string;
  service: string;
  signatures: boolean;
}

const ecdsa: SignatureCheck<boolean> = (cert, signed, signature) => verified(Buffer.from(signed), cert.key, Buffer.from(signature, 'base64url'), false);

/** The checks of the log being verified: each verify sends its setup first (a thread serves one verify after another). */
let checker: EntryChecker | undefined;

parentPort!.on('message', (m: { setup: HelperSetup } | { id: number; run: EntryRun }) => {
  if ('setup' in m) {
    const { dir, bundlePem, service, signatures } = m.setup;
    checker = new EntryChecker(service, new FingerprintEvidence(storedCertificate(dir), loadBundle(bundlePem), signatures ? ecdsa : null));
    return;
  }
  try {
    const result = checker!.check(m.run);
    parentPort!.postMessage({ id: m.id, ...result }, [result.leaves.buffer as ArrayBuffer, ...(result.nodes ? [result.nodes.buffer as ArrayBuffer] : [])]);
  } catch (err) {
    parentPort!.postMessage({ id: m.id, error: (err as Error).message });
  }
});
