/**
 * The audit log on the agent's admin API, for collectors and witnesses to pull:
 * `GET /v1/audit/checkpoint` (the latest signed checkpoint and its chain),
 * `GET /v1/audit/entries?from=&to=` (stored lines, at most 1000 per call),
 * `GET /v1/audit/proof?entry=N` (inclusion in the latest checkpoint) and
 * `GET /v1/audit/consistency?from=M` (from an older checkpoint size to the latest).
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { AuditLog } from '../../audit/log.ts';
import { parseCheckpoint } from '../../audit/checkpoint.ts';
import { consistencyProof, inclusionProof, readEntries } from '../../audit/proof.ts';
import { ADMIN_TOKEN_TO_READ } from '../identity/admin-access.ts';

const MAX_ENTRIES = 1000;

export function registerAuditRoutes(app: FastifyInstance, log: AuditLog): void {
  const bad = (reply: FastifyReply, code: string, message: string, status = 400) => reply.code(status).send({ error: { code, message } });
  /** The latest checkpoint, or a 404 answered. */
  const latest = (reply: FastifyReply) => {
    const cp = log.latestCheckpoint();
    if (!cp) bad(reply, 'no_checkpoint', 'no checkpoint has been signed yet', 404);
    return cp;
  };
  const index = (value: unknown, name: string, max: number) => {
    const n = Number(value);
    return typeof value === 'string' && /^[0-9]{1,16}$/.test(value) && n <= max ? n : { error: `${name} must be a whole number from 0 to ${max}` };
  };

  app.get('/v1/audit/checkpoint', async (_req, reply) => {
    const cp = latest(reply);
    if (!cp) return reply;
    return { origin: log.origin, size: parseCheckpoint(cp.text).size, checkpoint: cp.text, chain: cp.chainPem };
  });

  app.get<{ Querystring: Record<string, string> }>('/v1/audit/entries', ADMIN_TOKEN_TO_READ, async (req, reply) => {
    const size = log.tree.size;
    const from = index(req.query.from ?? '0', 'from', size);
    if (typeof from !== 'number') return bad(reply, 'bad_range', from.error);
    const to = index(req.query.to ?? String(Math.min(size, from + MAX_ENTRIES)), 'to', size);
    if (typeof to !== 'number') return bad(reply, 'bad_range', to.error);
    if (to < from || to - from > MAX_ENTRIES) return bad(reply, 'bad_range', `from ≤ to, at most ${MAX_ENTRIES} entries per call`);
    return { from, to, entries: readEntries(log.dir, from, to) };
  });

  app.get<{ Querystring: Record<string, string> }>('/v1/audit/proof', async (req, reply) => {
    const cp = latest(reply);
    if (!cp) return reply;
    const size = parseCheckpoint(cp.text).size;
    const entry = index(req.query.entry, 'entry', size - 1);
    if (typeof entry !== 'number') return bad(reply, 'bad_entry', `${entry.error} (the latest checkpoint covers ${size} entries)`);
    return inclusionProof(log.tree, readEntries(log.dir, entry, entry + 1)[0]!, entry, cp);
  });

  app.get<{ Querystring: Record<string, string> }>('/v1/audit/consistency', async (req, reply) => {
    const cp = latest(reply);
    if (!cp) return reply;
    const size = parseCheckpoint(cp.text).size;
    const from = index(req.query.from, 'from', size);
    if (typeof from !== 'number') return bad(reply, 'bad_range', from.error);
    return { ...consistencyProof(log.tree, from, size), checkpoint: cp.text, chain: cp.chainPem };
  });
}
