/**
 * The sidecar's `palisade agent` flags: an option group (cli/agent.ts) that starts the
 * embedded sidecar with the agent's in-memory SVID and puts `/v1/filter` on its admin port.
 */
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import type { AgentContext, AgentOptionGroup } from './agent-group.ts';
import { parseListen } from './process.ts';
import { prepareSidecar, type Sidecar } from '../agent/sidecar/index.ts';
import { ControlledSidecar } from '../agent/control/sidecar.ts';
import { isLoopbackHost } from '../agent/identity/loopback.ts';
import { loadRoutes } from '../agent/sidecar/outbound.ts';
import { APP_PROTOCOLS, type AppProtocol } from '../agent/sidecar/app-client.ts';
import { registerFilterRoutes } from '../agent/sidecar/admin.ts';
import { parseDuration } from '../agent/identity/duration.ts';
import { DEFAULT_LIVE_KEYS_REFRESH_MS } from '../agent/identity/live-keys.ts';
import { parseSpiffeId } from '../spiffe/pki.ts';
import { FINGERPRINT_TTL_SECONDS } from '../spiffe/fingerprint-limits.ts';
import type { DecisionRecord } from '../agent/sidecar/decision-log.ts';

export const sidecarAgentGroup: AgentOptionGroup = {
  addOptions(command: Command) {
    command
      .option('--inbound <host:port>', 'embedded sidecar: mTLS listener enforcing --filter in front of --app')
      .option('--app <url>', 'the application behind the inbound listener, e.g. http://127.0.0.1:8080')
      .option('--app-protocol <http1|h2c>', 'how the inbound listener speaks to --app: HTTP/1.1, or cleartext HTTP/2 (gRPC services)', 'http1')
      .option('--filter <file.wasm>', 'compiled policy filter; reloaded when the file changes or on PUT /v1/filter')
      .option('--filter-config <json>', 'filter plugin configuration, e.g. \'{"mode":"dry-run"}\'')
      .option('--case-file <cases.json>', 'a new filter must pass these cases before it replaces the current one')
      .option('--outbound <host:port>', 'embedded sidecar: plain HTTP listener for the application\'s calls (Host header = service name)')
      .option('--outbound-allow-remote', 'let --outbound listen on a non-loopback address (anyone who reaches it acts as this workload)')
      .option('--routes <file>', 'outbound routes: { "service": { "url": "https://…", "spiffeId": "spiffe://…" } }')
      .option('--identity-issuer <iss>', 'identity context: a SPIFFE ID whose identity contexts are accepted (repeatable: the edge, the sidecars that call this one), or the issuer of end-user JWTs verified with --identity-jwks', (v: string, prev: string[] = []) => [...prev, v])
      .option('--identity-audience <aud>', 'identity context: required audience')
      .option('--identity-jwks <file-or-url>', 'identity context: the issuer\'s JWKS')
      .option('--fingerprint-ttl <seconds>', 'lifetime of request fingerprints (signed and accepted)', String(FINGERPRINT_TTL_SECONDS))
      .option('--clock-skew <seconds>', 'tolerated clock difference for fingerprints and identity tokens', '5')
      .option('--revocation-staleness <duration>', "inbound: refuse every caller (503) once the CA's live keys could not be refreshed for this long", '60s');
  },
  async prepare(opts, ctx) {
    if (!opts.inbound && !opts.outbound) return;
    if (opts.inbound && (!opts.app || !(opts.filter || opts.control))) throw new CliError('--inbound needs --app URL and --filter FILE.wasm (or --control URL)', 2);
    if (opts.outbound && !opts.routes) throw new CliError('--outbound needs --routes FILE', 2);
    const appProtocol = opts.appProtocol as AppProtocol;
    if (!APP_PROTOCOLS.includes(appProtocol)) throw new CliError(`--app-protocol must be ${APP_PROTOCOLS.join(' or ')}, not "${opts.appProtocol}"`, 2);
    const { mesh: identityIssuers, external: externalIssuer } = identityIssuersOf(opts.identityIssuer as string[] | undefined);
    if (identityIssuers.length && !opts.inbound) throw new CliError('--identity-issuer SPIFFE_ID needs --inbound (it is what the inbound side accepts)', 2);
    const identity = [externalIssuer, opts.identityAudience, opts.identityJwks];
    if (identity.some(Boolean) && !identity.every(Boolean)) {
      throw new CliError('--identity-issuer, --identity-audience and --identity-jwks go together', 2);
    }
    const seconds = (flag: string, value: unknown) => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1 || n > 3600) throw new CliError(`${flag} must be a whole number of seconds (1–3600)`, 2);
      return n;
    };
    const fingerprintTtlSeconds = seconds('--fingerprint-ttl', opts.fingerprintTtl);
    const skewSeconds = seconds('--clock-skew', opts.clockSkew);
    let maxStaleMs: number;
    try {
      maxStaleMs = parseDuration(opts.revocationStaleness as string);
    } catch (err) {
      throw new CliError(`--revocation-staleness: ${(err as Error).message}`, 2);
    }
    // Shorter than two refresh periods, one slow fetch would refuse every caller.
    if (maxStaleMs < 2 * DEFAULT_LIVE_KEYS_REFRESH_MS) throw new CliError(`--revocation-staleness must be at least ${(2 * DEFAULT_LIVE_KEYS_REFRESH_MS) / 1000}s`, 2);
    const listen = (flag: unknown) => (flag ? parseListen(flag as string) : undefined);
    const inbound = listen(opts.inbound);
    const outbound = listen(opts.outbound);
    const allowRemote = opts.outboundAllowRemote === true;
    if (outbound && !allowRemote && !isLoopbackHost(outbound.host)) {
      throw new CliError(`--outbound ${opts.outbound}: the outbound listener signs requests as this workload and listens on loopback only; add --outbound-allow-remote to expose it`, 2);
    }
    const options = {
      outbound: outbound && { ...outbound, allowRemote, routes: await sidecarError(loadRoutes(opts.routes as string)) },
      filterConfiguration: opts.filterConfig as string | undefined,
      // The case runner (the test host's case format) loads only for an agent given --case-file.
      checkFilter: opts.caseFile ? await sidecarError(import('../agent/sidecar/case-check.ts').then((m) => m.caseFileCheck(opts.caseFile as string))) : undefined,
      identityContext: externalIssuer
        ? { issuer: externalIssuer, audience: opts.identityAudience as string, jwks: opts.identityJwks as string }
        : undefined,
      identityIssuers,
      revocation: { maxStaleMs },
      fingerprintTtlSeconds,
      skewSeconds,
      logger: ctx.log,
    };
    const warnRemote = (ctx: AgentContext) => {
      if (outbound && allowRemote && !isLoopbackHost(outbound.host)) {
        ctx.log.warn({ outbound: opts.outbound }, 'the outbound listener is reachable from other machines (--outbound-allow-remote): anyone who reaches it sends requests as this workload');
      }
    };
    const listening = (ctx: AgentContext, started: Sidecar) => {
      ctx.log.info({ inbound: started.inbound?.url ?? null, outbound: started.outbound?.url ?? null }, 'sidecar listening');
    };
    if (opts.control) {
      // The control plane sends the filter once the agent has joined: the sidecar starts with the first one.
      return {
        setup(ctx) {
          warnRemote(ctx);
          const sidecar = new ControlledSidecar(async (filter) => {
            const onDecision = (record: DecisionRecord, entry: string | undefined) => ctx.decisions?.(record, entry);
            const prepared = await prepareSidecar({ ...options, inbound: inbound && { ...inbound, app: opts.app as string, appProtocol, filter, onDecision } });
            return prepared.start(ctx.agent, ctx.agent.metrics, ctx.audit);
          });
          ctx.controlApply = sidecar.apply;
          ctx.closers.push(() => sidecar.close());
          void sidecar.ready.then((started) => listening(ctx, started));
        },
      };
    }
    try {
      const sidecar = await prepareSidecar({ ...options, inbound: inbound && { ...inbound, app: opts.app as string, appProtocol, filterFile: opts.filter as string } });
      ctx.closers.push(() => sidecar.close());
      return {
        async setup(ctx) {
          warnRemote(ctx);
          const started = await sidecarError(sidecar.start(ctx.agent, ctx.agent.metrics, ctx.audit));
          ctx.closers.push(() => started.close());
          listening(ctx, started);
          const filters = started.filters;
          if (filters) ctx.adminPlugins.push(async (app) => registerFilterRoutes(app, filters));
        },
      };
    } catch (err) {
      throw sidecarCliError(err);
    }
  },
};

/** `--identity-issuer` values: SPIFFE IDs (mesh contexts) and at most one external issuer (with --identity-jwks). */
function identityIssuersOf(values: string[] = []): { mesh: string[]; external?: string } {
  const mesh = values.filter((v) => v.startsWith('spiffe://'));
  for (const id of mesh) {
    try {
      if (parseSpiffeId(id).path === '') throw new Error('a workload SPIFFE ID has a path');
    } catch (err) {
      throw new CliError(`--identity-issuer ${id}: ${(err as Error).message}`, 2);
    }
  }
  const external = values.filter((v) => !v.startsWith('spiffe://'));
  if (external.length > 1) throw new CliError(`--identity-issuer: one external issuer at most (with --identity-jwks), not ${external.join(', ')}`, 2);
  return { mesh, external: external[0] };
}

async function sidecarError<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    throw sidecarCliError(err);
  }
}

function sidecarCliError(err: unknown): CliError {
  return err instanceof CliError ? err : new CliError(`sidecar: ${(err as Error).message}`, 2);
}
