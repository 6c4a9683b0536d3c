/**
 * The edge's `palisade agent` flags (docs/edge.md): an option group (cli/agent.ts) that
 * starts the edge gateway with the agent's SVID. Routes, the provider's discovery and the
 * client secret are all checked before the join token is spent.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import type { AgentOptionGroup } from './agent-group.ts';
import { parseListen } from './process.ts';
import { isLoopbackHost } from '../agent/identity/loopback.ts';

const collect = (value: string, previous: string[] = []) => [...previous, value];

export const edgeAgentGroup: AgentOptionGroup = {
  addOptions(command: Command) {
    command
      .option('--edge <host:port>', 'edge gateway: HTTPS ingress that turns OIDC bearer tokens into identity contexts (e.g. 127.0.0.1:8443)')
      .option('--edge-envoy', 'edge in Envoy mode: answer Envoy\'s ext_authz on the --sds socket (palisade envoy bootstrap --edge) instead of listening')
      .option('--edge-routes <file>', 'edge routes: { "/cards": { "url": "https://…", "spiffeId": "spiffe://…" } }, longest prefix wins')
      .option('--oidc-issuer <url>', 'edge: the OpenID provider (discovery; https, or http on loopback)')
      .option('--oidc-audience <aud>', 'edge: required audience of access tokens')
      .option('--oidc-token-type <typ>', 'edge: required JWT typ header, e.g. at+jwt (RFC 9068)')
      .option('--oidc-client-id <id>', 'edge: its client at the provider, for introspecting opaque tokens')
      .option('--oidc-client-secret-file <file>', 'edge: that client\'s secret')
      .option('--edge-claim <name>', 'edge: a token claim copied into the identity context beyond the standard ones (repeatable)', collect)
      .option('--context-ttl <seconds>', 'edge: lifetime of minted identity contexts', '60');
  },
  async prepare(opts) {
    const edgeFlags = ['edgeRoutes', 'oidcIssuer', 'oidcAudience', 'oidcTokenType', 'oidcClientId', 'oidcClientSecretFile', 'edgeClaim'];
    if (!opts.edge && !opts.edgeEnvoy) {
      if (edgeFlags.some((f) => opts[f] !== undefined)) throw new CliError('the --edge-* and --oidc-* flags need --edge HOST:PORT or --edge-envoy', 2);
      return;
    }
    if (opts.edge && opts.edgeEnvoy) throw new CliError('--edge HOST:PORT listens itself, --edge-envoy answers Envoy: give one', 2);
    if (opts.edgeEnvoy && !opts.sds) throw new CliError('--edge-envoy needs --sds unix:PATH (Envoy\'s ext_authz calls the agent there)', 2);
    const flag = opts.edge ? '--edge' : '--edge-envoy';
    if (!opts.edgeRoutes || !opts.oidcIssuer || !opts.oidcAudience) throw new CliError(`${flag} needs --edge-routes FILE, --oidc-issuer URL and --oidc-audience AUD`, 2);
    if (Boolean(opts.oidcClientId) !== Boolean(opts.oidcClientSecretFile)) throw new CliError('--oidc-client-id and --oidc-client-secret-file go together', 2);
    const ttl = Number(opts.contextTtl);
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 60) throw new CliError('--context-ttl must be a whole number of seconds (1–60)', 2);
    const listen = opts.edge ? parseListen(opts.edge as string) : undefined;
    let secret: string | undefined;
    if (opts.oidcClientSecretFile) {
      try {
        secret = readFileSync(opts.oidcClientSecretFile as string, 'utf8').trim();
      } catch (err) {
        throw new CliError(`cannot read --oidc-client-secret-file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 2);
      }
    }
    // The edge (jose, undici's request API, OIDC discovery) loads only for an agent that runs one.
    const { prepareEdge } = await import('../agent/edge/index.ts');
    let edge;
    try {
      edge = await prepareEdge({
        ...listen,
        routesFile: opts.edgeRoutes as string,
        issuer: opts.oidcIssuer as string,
        audience: opts.oidcAudience as string,
        typ: opts.oidcTokenType as string | undefined,
        client: secret === undefined ? undefined : { id: opts.oidcClientId as string, secret },
        extraClaims: opts.edgeClaim as string[] | undefined,
        contextTtlSeconds: ttl,
        fingerprintTtlSeconds: opts.fingerprintTtl === undefined ? undefined : Number(opts.fingerprintTtl),
      });
    } catch (err) {
      throw new CliError(`edge: ${(err as Error).message}`, 2);
    }
    return {
      async setup(ctx) {
        if (!listen) {
          ctx.xdsServices.push(await edge.extAuthz(ctx.agent, ctx.log));
          ctx.log.info({ sds: opts.sds, issuer: opts.oidcIssuer }, 'edge answering Envoy\'s ext_authz');
          return;
        }
        let listener;
        try {
          listener = await edge.start(ctx.agent, ctx.log);
        } catch (err) {
          throw new CliError(`edge: ${(err as Error).message}`);
        }
        ctx.closers.push(() => listener.close());
        if (!isLoopbackHost(listen.host)) ctx.log.warn({ edge: listener.url }, 'the edge is reachable from other machines');
        ctx.log.info({ edge: listener.url, issuer: opts.oidcIssuer }, 'edge listening');
      },
    };
  },
};
