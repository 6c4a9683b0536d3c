/**
 * A real perimeter writing an audit log: test CA, the card service's inbound sidecar with
 * the compiled card policy in the strict host, an echo application, and a frontend calling
 * it with its SVID and signed fingerprints.
 */
import type { Agent } from 'undici';
import { AuditLog, type AuditLogOptions } from '../../audit/log.ts';
import { DecisionAudit, type AuditFailure } from '../../agent/sidecar/audit.ts';
import { startInbound, type Listener } from '../../agent/sidecar/inbound.ts';
import { FilterSlot } from '../../agent/sidecar/filter-slot.ts';
import { Registry } from 'prom-client';
import { identities, startEcho, captureLog, mtlsAgent, call, type Echo, type Call } from '../agent/sidecar/harness.ts';
import { compiled, loadStrict } from '../agent/sidecar/policies.ts';

export type Ids = Awaited<ReturnType<typeof identities>>;

export interface Perimeter {
  ids: Ids;
  log: AuditLog;
  registry: Registry;
  lines: Record<string, unknown>[];
  echo: Echo;
  sidecar: Listener;
  call(c?: Call): ReturnType<typeof call>;
  close(): Promise<void>;
}

export async function startPerimeter(dir: string, opts: { failure?: AuditFailure; log?: Partial<AuditLogOptions>; ids?: Ids } = {}): Promise<Perimeter> {
  const ids = opts.ids ?? (await identities());
  const log = AuditLog.open({ dir, signer: ids.card, checkpointEvery: 5, ...opts.log });
  const registry = new Registry();
  const captured = captureLog();
  const echo = await startEcho();
  const sidecar = await startInbound({
    app: echo.url,
    identity: ids.card,
    filters: await FilterSlot.create(await compiled('card'), loadStrict),
    logger: captured.logger,
    audit: new DecisionAudit(log, opts.failure ?? 'closed', captured.logger, registry),
  });
  const agent: Agent = mtlsAgent(ids.ca.certPem, ids.frontend.svid());
  return {
    ids, log, registry, lines: captured.lines, echo, sidecar,
    call: (c) => call(sidecar.url, agent, ids.frontend.svid(), c),
    async close() {
      await agent.close();
      await sidecar.close();
      await echo.close();
      await log.close();
    },
  };
}
