/// <reference path="./oidc-provider.d.ts" />
/**
 * A local OpenID provider for tests, benches and the demo: oidc-provider (the certified Node
 * implementation) on loopback, issuing JWT access tokens (RFC 9068, ES256, `aud` = the API
 * through resource indicators) by client credentials and by authorization code with PKCE,
 * opaque tokens to one client (for introspection), with a scripted login instead of a
 * browser. Configured completely (keys, cookie keys, adapter, lifetimes) so it prints none
 * of its development notices.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type JWTHeaderParameters, type JWTPayload } from 'jose';
import Provider, { errors } from 'oidc-provider';

export interface LocalUser {
  /** API scopes this user may be granted. */
  scopes: string[];
  /** Extra claims put into the user's access tokens (acr, consent, risk, …). */
  claims?: Record<string, unknown>;
}

export interface LocalProviderOptions {
  /** The API's resource indicator: the access tokens' `aud`. */
  audience: string;
  /** Every scope the API knows. */
  scopes: string[];
  users: Record<string, LocalUser>;
  /** Access token lifetime (default 300 s). */
  tokenTtlSeconds?: number;
}

export interface LocalProvider {
  issuer: string;
  /** The edge's own client, for introspection. */
  edgeClient: { id: string; secret: string };
  /** A user's JWT access token: authorization code + PKCE through the scripted login. */
  login(user: string, scopes: string[]): Promise<string>;
  /** A machine client's token (client credentials): a JWT, or opaque. */
  clientToken(scopes: string[], format?: 'jwt' | 'opaque'): Promise<string>;
  /**
   * A token signed with the provider's own key and `kid` but with the claims and header a
   * test chooses (expired, another audience, a `jku` …): what only a verifier's checks refuse.
   */
  forge(claims: JWTPayload, header?: Partial<JWTHeaderParameters>): Promise<string>;
  /** Revokes an opaque client token (RFC 7009), as its client would. */
  revoke(token: string): Promise<void>;
  close(): Promise<void>;
}

/** The API's resource indicator (RFC 8707 wants an absolute URI); tokens for it carry `aud` = the audience. */
const RESOURCE = 'urn:palisade:api';
const APP = { id: 'bank-web', redirect: 'http://127.0.0.1/callback' };
const JOB = { id: 'batch-job', secret: randomBytes(24).toString('base64url') };
const OPAQUE_JOB = { id: 'batch-job-opaque', secret: randomBytes(24).toString('base64url') };
const EDGE = { id: 'palisade-edge', secret: randomBytes(24).toString('base64url') };

export async function startLocalProvider(opts: LocalProviderOptions): Promise<LocalProvider> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const ttl = opts.tokenTtlSeconds ?? 300;
  const kid = randomBytes(8).toString('hex');
  const provider = new Provider(issuer, {
    clients: [
      { client_id: APP.id, token_endpoint_auth_method: 'none', redirect_uris: [APP.redirect], grant_types: ['authorization_code'], response_types: ['code'] },
      { client_id: JOB.id, client_secret: JOB.secret, grant_types: ['client_credentials'], response_types: [], redirect_uris: [] },
      { client_id: OPAQUE_JOB.id, client_secret: OPAQUE_JOB.secret, grant_types: ['client_credentials'], response_types: [], redirect_uris: [] },
      { client_id: EDGE.id, client_secret: EDGE.secret, grant_types: [], response_types: [], redirect_uris: [] },
    ],
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' }] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    adapter: MemoryAdapter,
    pkce: { required: () => true },
    renderError: (ctx: { type: string; body: unknown }, out: Record<string, string>) => {
      ctx.type = 'json';
      ctx.body = out;
    },
    findAccount: (_ctx: unknown, id: string) => (opts.users[id] ? { accountId: id, claims: () => ({ sub: id }) } : undefined),
    extraTokenClaims: (_ctx: unknown, token: { accountId?: string }) => (token.accountId ? opts.users[token.accountId]?.claims : undefined),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true, allowedPolicy: (_ctx: unknown, client: { clientId: string }) => client.clientId === EDGE.id },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, resource: string, client: { clientId: string }) => {
          if (resource !== RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: opts.scopes.join(' '),
            audience: opts.audience,
            accessTokenTTL: ttl,
            accessTokenFormat: client.clientId === OPAQUE_JOB.id ? 'opaque' : 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    ttl: { AccessToken: ttl, AuthorizationCode: 60, ClientCredentials: ttl, Grant: 3600, IdToken: 3600, Interaction: 600, Session: 3600 },
  });
  const callback = provider.callback();
  // The scripted login: the user named in login_hint signs in and is granted the scopes they hold.
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!req.url?.startsWith('/interaction/')) return callback(req, res);
    void (async () => {
      const details = await provider.interactionDetails(req, res);
      const accountId = details.params.login_hint ?? '';
      const user = opts.users[accountId];
      if (!user) return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'unknown user' });
      const grant = new provider.Grant({ accountId, clientId: APP.id });
      grant.addOIDCScope('openid');
      const requested = (details.params.scope ?? '').split(' ').filter((s) => opts.scopes.includes(s));
      grant.addResourceScope(RESOURCE, requested.filter((s) => user.scopes.includes(s)).join(' '));
      // Asked for but not held: rejected, so the token simply lacks them (no consent loop).
      const refused = requested.filter((s) => !user.scopes.includes(s));
      if (refused.length) grant.rejectResourceScope(RESOURCE, refused.join(' '));
      await provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: false });
    })().catch(() => {
      res.statusCode = 500;
      res.end();
    });
  });

  const tokenRequest = async (body: Record<string, string>, client?: { id: string; secret: string }) => {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    if (client) headers.authorization = `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}`;
    const res = await fetch(`${issuer}/token`, { method: 'POST', headers, body: new URLSearchParams(body) });
    const answer = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
    if (!answer.access_token) throw new Error(`token endpoint: ${answer.error}: ${answer.error_description}`);
    return answer.access_token;
  };

  return {
    issuer,
    edgeClient: EDGE,
    async login(user, scopes) {
      const verifier = randomBytes(32).toString('base64url');
      const cookies = new Map<string, string>();
      const step = async (url: string) => {
        const res = await fetch(url, { redirect: 'manual', headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') } });
        for (const c of res.headers.getSetCookie()) {
          const [pair] = c.split(';');
          const eq = pair.indexOf('=');
          cookies.set(pair.slice(0, eq), pair.slice(eq + 1));
        }
        const location = res.headers.get('location');
        if (!location) throw new Error(`login for ${user}: ${res.status} ${await res.text()}`);
        return new URL(location, issuer);
      };
      let next = await step(`${issuer}/auth?${new URLSearchParams({
        client_id: APP.id, response_type: 'code', redirect_uri: APP.redirect, scope: ['openid', ...scopes].join(' '), login_hint: user,
        resource: RESOURCE, code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
        state: randomBytes(8).toString('hex'),
      })}`);
      while (next.origin === issuer) next = await step(next.href);
      const code = next.searchParams.get('code');
      if (!code) throw new Error(`login for ${user}: ${next.searchParams.get('error')}: ${next.searchParams.get('error_description')}`);
      return tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: APP.redirect, code_verifier: verifier, client_id: APP.id, resource: RESOURCE });
    },
    clientToken(scopes, format = 'jwt') {
      return tokenRequest({ grant_type: 'client_credentials', scope: scopes.join(' '), resource: RESOURCE }, format === 'jwt' ? JOB : OPAQUE_JOB);
    },
    forge(claims, header = {}) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: issuer, aud: opts.audience, iat: now, exp: now + ttl, ...claims })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid, ...header })
        .sign(privateKey);
    },
    async revoke(token) {
      const res = await fetch(`${issuer}/token/revocation`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${OPAQUE_JOB.id}:${OPAQUE_JOB.secret}`).toString('base64')}` },
        body: new URLSearchParams({ token }),
      });
      if (res.status !== 200) throw new Error(`revocation: ${res.status} ${await res.text()}`);
    },
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** oidc-provider's storage, in memory, shared by the providers of this process (its own in-memory adapter announces itself as development-only). */
class MemoryAdapter {
  static #store = new Map<string, { payload: Record<string, unknown>; until: number }>();
  constructor(private readonly model: string) {}
  #key = (id: string) => `${this.model}:${id}`;
  async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number) {
    MemoryAdapter.#store.set(this.#key(id), { payload, until: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
    if (typeof payload.uid === 'string') MemoryAdapter.#store.set(`uid:${payload.uid}`, { payload: { id }, until: Infinity });
    if (typeof payload.userCode === 'string') MemoryAdapter.#store.set(`userCode:${payload.userCode}`, { payload: { id }, until: Infinity });
  }
  async find(id: string) {
    const entry = MemoryAdapter.#store.get(this.#key(id));
    if (!entry || entry.until <= Date.now()) return undefined;
    return entry.payload;
  }
  async findByUid(uid: string) {
    const ref = MemoryAdapter.#store.get(`uid:${uid}`);
    return ref && this.find(ref.payload.id as string);
  }
  async findByUserCode(code: string) {
    const ref = MemoryAdapter.#store.get(`userCode:${code}`);
    return ref && this.find(ref.payload.id as string);
  }
  async consume(id: string) {
    const entry = MemoryAdapter.#store.get(this.#key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id: string) {
    MemoryAdapter.#store.delete(this.#key(id));
  }
  async revokeByGrantId(grantId: string) {
    for (const [key, entry] of MemoryAdapter.#store) if (entry.payload.grantId === grantId) MemoryAdapter.#store.delete(key);
  }
}
