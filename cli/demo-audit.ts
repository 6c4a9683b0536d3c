/**
 * The demo's audit logs: each inbound sidecar writes one (`palisade agent --audit-dir`
 * does the same), kept after the demo in their own directory with the trust bundle beside
 * them, so `palisade audit verify` can be run on them afterwards.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { AuditLog } from '../audit/log.ts';
import { verifyLog } from '../audit/verify.ts';
import { DecisionAudit } from '../agent/sidecar/audit.ts';
import type { IdentityAgent } from '../agent/identity/agent.ts';

export class DemoAudit {
  readonly #logs = new Map<string, AuditLog>();
  private constructor(readonly root: string, private readonly bundlePem: string) {}

  static async create(bundlePem: string): Promise<DemoAudit> {
    const root = await mkdtemp(join(tmpdir(), 'palisade-demo-audit-'));
    await writeFile(join(root, 'bundle.pem'), bundlePem);
    return new DemoAudit(root, bundlePem);
  }

  /** The audit for `name`'s inbound sidecar. */
  for(name: string, agent: IdentityAgent, logger: Logger): DecisionAudit {
    const log = AuditLog.open({ dir: join(this.root, name), signer: agent });
    this.#logs.set(name, log);
    return new DecisionAudit(log, 'closed', logger, agent.metrics);
  }

  /** `name`'s log, once `for` opened it. */
  log(name: string): AuditLog | undefined {
    return this.#logs.get(name);
  }

  /** Signs what is there, verifies each log as `palisade audit verify` would, and prints the command to do it again. */
  async report(out: (line: string) => void): Promise<void> {
    out('\naudit logs (every decision, signed checkpoints, the callers\' fingerprints):');
    for (const [name, log] of this.#logs) {
      await log.checkpoint();
      const result = await verifyLog(log.dir, this.bundlePem);
      out(`  ${name}: verified ${result.entries} entries, ${result.checkpoints} checkpoints`);
    }
    out(`  check them yourself: palisade audit verify ${join(this.root, '<service>')} --bundle ${join(this.root, 'bundle.pem')}`);
  }

  async close(): Promise<void> {
    for (const log of this.#logs.values()) await log.close();
  }
}
