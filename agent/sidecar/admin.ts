/**
 * The filter's admin surface on the agent's admin server: `GET /v1/filter` (what runs and
 * the last refusal), `PUT /v1/filter` (a new compiled filter as the raw wasm body), and
 * the reload metric.
 */
import type { FastifyInstance } from 'fastify';
import { Counter, register as defaultRegistry, type Registry } from '../metrics.ts';
import type { Logger } from 'pino';
import type { FilterSlot } from './filter-slot.ts';

const MAX_WASM_BYTES = 16 * 1024 * 1024;

/** Counts swaps and refusals, and logs each; call once per slot. */
export function observeReloads(slot: FilterSlot, logger: Logger, registry: Registry = defaultRegistry): void {
  const name = 'palisade_filter_reloads_total';
  const counter =
    (registry.getSingleMetric(name) as Counter<'result'> | undefined) ??
    new Counter({ name, help: 'Filter hot reloads by result (swapped or refused)', labelNames: ['result'], registers: [registry] });
  slot.on('swapped', (status) => {
    counter.inc({ result: 'swapped' });
    logger.info({ sha256: status.sha256, source: status.source }, 'filter swapped');
  });
  slot.on('refused', (refusal) => {
    counter.inc({ result: 'refused' });
    logger.warn(refusal, 'filter refused; previous filter kept');
  });
}

export function registerFilterRoutes(app: FastifyInstance, slot: FilterSlot): void {
  for (const type of ['application/wasm', 'application/octet-stream']) {
    if (!app.hasContentTypeParser(type)) {
      app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: MAX_WASM_BYTES }, (_req, body, done) => done(null, body));
    }
  }
  app.get('/v1/filter', async () => slot.status());
  app.put('/v1/filter', { bodyLimit: MAX_WASM_BYTES }, async (req, reply) => {
    if (!Buffer.isBuffer(req.body) || req.body.length === 0) {
      return reply.code(415).send({ error: { code: 'expected_wasm', message: 'send the compiled filter as the body, content-type application/wasm' } });
    }
    const result = await slot.replace(req.body, 'admin api');
    if (!result.ok) return reply.code(422).send({ error: { code: 'filter_refused', message: result.reason } });
    return slot.status();
  });
}
