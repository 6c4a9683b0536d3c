/**
 * A helper thread of `palisade audit verify` (audit/helpers.ts): checks the runs of entry
 * lines the main thread sends it (audit/entry-runs.ts), fingerprint signatures included
 * when asked, one after another (node:crypto's synchronous ECDSA P-256 verify), and answers
 * each with the run's leaf hashes and its first failure.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { verify } from 'node:crypto';
import { loadBundle } from './chain.ts';
import { FingerprintEvidence, type SignatureCheck } from './evidence.ts';
import { EntryChecker, storedCertificate, type EntryRun } from './entry-runs.ts';

/** What every run of the log is checked with: sent once, when the thread starts. */
export interface HelperSetup {
  dir: string;
  bundlePem: string;
  service: string;
  signatures: boolean;
}

const ecdsa: SignatureCheck<boolean> = (cert, signed, signature) => {
  try {
    return verify('sha256', Buffer.from(signed), { key: cert.key, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64url'));
  } catch {
    return false; // a signature that is not even P-256's r‖s
  }
};

const setup = workerData as HelperSetup;
const checker = new EntryChecker(setup.service, new FingerprintEvidence(storedCertificate(setup.dir), loadBundle(setup.bundlePem), setup.signatures ? ecdsa : null));

parentPort!.on('message', ({ id, run }: { id: number; run: EntryRun }) => {
  try {
    const result = checker.check(run);
    parentPort!.postMessage({ id, ...result }, [result.leaves.buffer as ArrayBuffer, ...(result.nodes ? [result.nodes.buffer as ArrayBuffer] : [])]);
  } catch (err) {
    parentPort!.postMessage({ id, error: (err as Error).message });
  }
});
