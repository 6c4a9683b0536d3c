/**
 * The demo's edge (`palisade demo`): a local OpenID provider (oidc-provider on loopback) and
 * the edge gateway, run by the frontend workload's agent, in front of card-service and the
 * ledger; the scenarios that start there with real tokens; and how the demo prints the
 * edge's lines and a context's delegation chain.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import { SignJWT, decodeJwt, generateKeyPair, type JWTPayload } from 'jose';
import { startLocalProvider, type LocalProvider } from '../testing/identity-provider.ts';
import { prepareEdge } from '../agent/edge/index.ts';
import type { Listener } from '../agent/sidecar/inbound.ts';
import type { IdentityAgent } from '../agent/identity/agent.ts';
import type { Actor } from '../agent/sidecar/context-token.ts';

export const AUDIENCE = 'bank-apis';

/** alice may list cards and read PII but has not consented to PII use; bob may only see his profile. */
export function startDemoProvider(): Promise<LocalProvider> {
  return startLocalProvider({
    audience: AUDIENCE,
    scopes: ['list_cards', 'pii', 'profile'],
    users: { alice: { scopes: ['list_cards', 'pii', 'profile'], claims: { acr: 'mfa', consent: [] } }, bob: { scopes: ['profile'] } },
  });
}

export interface DemoEdge {
  listener: Listener;
  /** GET through the edge as a client outside the mesh (trusting the CA bundle). */
  get(path: string, token?: string): Promise<{ status: number; body: string }>;
  close(): Promise<void>;
}

export async function startDemoEdge(opts: {
  dir: string;
  provider: LocalProvider;
  agent: IdentityAgent;
  bundlePem: string;
  routes: Record<string, { url: string; spiffeId: string }>;
  logger: Logger;
}): Promise<DemoEdge> {
  const routesFile = join(opts.dir, 'edge-routes.json');
  await writeFile(routesFile, JSON.stringify(opts.routes));
  const edge = await prepareEdge({ host: '127.0.0.1', port: 0, routesFile, issuer: opts.provider.issuer, audience: AUDIENCE, typ: 'at+jwt' });
  const listener = await edge.start(opts.agent, opts.logger);
  const client = new Agent({ connect: { ca: opts.bundlePem, checkServerIdentity: () => undefined } });
  return {
    listener,
    async get(path, token) {
      const res = await request(`${listener.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {}, dispatcher: client });
      return { status: res.statusCode, body: await res.body.text() };
    },
    async close() {
      await client.close();
      await listener.close();
    },
  };
}

interface Scenario {
  title: string;
  expect: number;
  run: () => Promise<{ status: number; body: string }>;
  why: string;
}

/** The story, from the edge: real tokens from the provider, and tokens the edge must refuse. */
export function edgeScenarios(edge: DemoEdge, provider: LocalProvider): Scenario[] {
  const now = () => Math.floor(Date.now() / 1000);
  return [
    {
      title: 'allowed: alice signs in (authorization code + PKCE) and lists her cards through the edge',
      expect: 200,
      run: async () => edge.get('/cards', await provider.login('alice', ['list_cards'])),
      why: 'the edge verified the token (JWKS by discovery), minted a context for card-service; rule list-cards allows the frontend (the edge) with list_cards',
    },
    {
      title: 'allowed, two hops: card 42 with its balance from the ledger',
      expect: 200,
      run: async () => edge.get('/cards/42', await provider.login('alice', ['list_cards'])),
      why: 'card-service passed the authorization on; its sidecar re-issued the context for the ledger with act = card-service ← frontend, which the ledger\'s rule checks',
    },
    {
      title: 'denied by policy: card 42\'s PII without the user\'s consent',
      expect: 403,
      run: async () => edge.get('/cards/42/pii', await provider.login('alice', ['list_cards', 'pii'])),
      why: 'deny rule pii-needs-scope-and-consent applies: alice\'s consent claim lacks "pii"',
    },
    {
      title: 'missing scope: bob, who may not list cards, tries to',
      expect: 403,
      run: async () => edge.get('/cards', await provider.login('bob', ['list_cards', 'profile'])),
      why: 'the edge authenticated bob; card-service refused him (no allow rule applies without list_cards), not the edge',
    },
    {
      title: 'forged token: signed with a key the provider never published',
      expect: 401,
      run: async () => {
        const { privateKey } = await generateKeyPair('ES256');
        const forged = await new SignJWT({ sub: 'alice', scope: 'list_cards', iss: provider.issuer, aud: AUDIENCE, iat: now(), exp: now() + 300 })
          .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'forged' })
          .sign(privateKey);
        return edge.get('/cards', forged);
      },
      why: 'refused at the edge (401, WWW-Authenticate: Bearer error="invalid_token"): no key in the provider\'s JWKS verifies it',
    },
    {
      title: 'expired token: one of alice\'s tokens from ten minutes ago',
      expect: 401,
      run: async () => edge.get('/cards', await provider.forge({ sub: 'alice', scope: 'list_cards', iat: now() - 600, exp: now() - 300 })),
      why: 'refused at the edge: exp is past (30 s skew at most)',
    },
    {
      title: 'wrong audience: a token the provider issued for another API',
      expect: 401,
      run: async () => edge.get('/cards', await provider.forge({ sub: 'alice', scope: 'list_cards', aud: 'another-api' })),
      why: 'refused at the edge: aud is not bank-apis',
    },
  ];
}

/** `alice via card-service ← frontend`: whose request, and through whom, from a context the app received. */
export function delegationOf(req: IncomingMessage): { on_behalf_of?: unknown; via?: string } {
  const token = req.headers.authorization?.slice(7);
  let claims: JWTPayload;
  try {
    claims = decodeJwt(token ?? ''); // verified by the sidecar in front of the app
  } catch {
    return {};
  }
  const chain: string[] = [];
  for (let a = claims.act as Actor | undefined; a; a = a.act) chain.push(a.sub.split('/').at(-1)!);
  return chain.length ? { on_behalf_of: claims.sub, via: chain.join(' ← ') } : {};
}

/** A demo line for the edge's own log record. */
export function describeEdge(d: Record<string, unknown>): string {
  const who = d.sub ? `user ${d.sub}` : 'no user';
  const target = d.target ? String(d.target).split('/').at(-1) : 'nowhere';
  return `edge: ${d.method} ${d.path} (${who}) → ${target} → ${d.status} [${d.reason}] trace ${String(d.trace_id).slice(0, 8)}… ${d.latency_ms} ms`;
}
