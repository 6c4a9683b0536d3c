/**
 * Who may call an admin route, as route options the agent's parts pass when they add
 * routes (admin.ts enforces them). Apart from admin.ts so that those parts do not load
 * fastify: the agent loads it, with admin.ts, only when it serves --admin (~2.4 MB of an
 * idle agent's RSS, bench/startup.ts).
 */
import type {} from 'fastify';

/**
 * Route option of a state-changing route that every local process may call without the
 * admin token. Only the fingerprint signer uses it (sign-endpoint.ts says why).
 */
export const OPEN_TO_LOCAL_CALLERS = { config: { adminToken: false } } as const;

/**
 * Route option of a read-only route that still needs the admin token: what it answers is
 * not for every local process (the audit entries carry callers, users' claims and paths).
 */
export const ADMIN_TOKEN_TO_READ = { config: { adminToken: true } } as const;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false: see OPEN_TO_LOCAL_CALLERS; true: see ADMIN_TOKEN_TO_READ. */
    adminToken?: boolean;
  }
}
