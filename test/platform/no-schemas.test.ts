import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Fastify from 'fastify';
import { NO_SCHEMAS } from '../../platform/no-schemas.ts';

// A server built with NO_SCHEMAS (the CA, the control plane, the agent's admin API) serves
// routes without schemas and refuses, at start-up, a route that declares one: nothing would
// check it.

test('a route without a schema is served', async () => {
  const app = Fastify({ schemaController: NO_SCHEMAS });
  app.post('/echo', async (request) => ({ got: request.body }));
  try {
    const res = await app.inject({ method: 'POST', url: '/echo', payload: { a: 1 } });
    assert.is(res.statusCode, 200);
    assert.equal(res.json(), { got: { a: 1 } });
  } finally {
    await app.close();
  }
});

test('a route with a body schema fails to register', async () => {
  const app = Fastify({ schemaController: NO_SCHEMAS });
  app.post('/checked', { schema: { body: { type: 'object', required: ['a'] } } }, async () => 'ok');
  try {
    await app.ready();
    assert.unreachable('ready() accepted a route with a schema');
  } catch (err) {
    assert.match((err as Error).message, /declare no schemas/);
  } finally {
    await app.close();
  }
});

test.run();
