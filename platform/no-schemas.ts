/**
 * fastify's `schemaController` option for a server whose routes declare no schema (the CA's,
 * the control plane's, the agent's admin API: they read their bodies themselves). fastify's
 * default compilers load ajv and fast-json-stringify into the process for its whole life
 * (bench/startup.ts: ~1 MB of an idle `ca serve`), and the build leaves them in node_modules
 * for that reason (scripts/build.ts). A route added with a schema fails to register, at
 * start-up, instead of being checked by nothing.
 */
export const NO_SCHEMAS = { compilersFactory: { buildValidator: refuseSchema, buildSerializer: refuseSchema } };

function refuseSchema(): never {
  throw new Error('routes of this server declare no schemas (platform/no-schemas.ts)');
}
