/**
 * The ECDS flags of `palisade agent`. Kept apart from `palisade envoy` (cli/envoy.ts): that
 * command loads Envoy's protos and the config validator, which an agent needs only once it
 * serves ECDS, and then loads lazily.
 */
// Every agent loads prom-client for its own metrics; a static import, as the bundle needs for
// a CommonJS package (scripts/build.ts).
import { Counter } from '../agent/metrics.ts';
import type { AgentContext, AgentOptionGroup, PrepareContext } from './agent-group.ts';
import { CliError } from './errors.ts';
import type { EcdsOptions, EcdsServer as Ecds } from '../agent/xds/ecds.ts';
import { ManifestError } from '../envoy/manifest.ts';

const MODES = ['enforce', 'dry-run'];

/**
 * `palisade agent --ecds-policy build/x.manifest.json`: serve compiled policies to Envoy over
 * ECDS on the --sds socket, republish when a manifest is replaced or on
 * `POST /v1/ecds/publish` (admin endpoint), count pushes, ACKs and NACKs in /metrics.
 */
export const ecdsAgentGroup: AgentOptionGroup = {
  addOptions(command) {
    command
      .option('--ecds-policy <manifest...>', 'serve compiled policies to Envoy over ECDS on the --sds socket, republished when rebuilt')
      .option('--ecds-mode <mode>', "run the served policies as 'enforce' or 'dry-run', whatever their compiled mode");
  },
  async prepare(opts, { log, closers }) {
    const manifests = opts.ecdsPolicy as string[] | undefined;
    if (!manifests?.length) return;
    if (!opts.sds) throw new CliError('--ecds-policy needs --sds: ECDS is served on the same socket as SDS', 2);
    const initialMode = opts.ecdsMode as string | undefined;
    if (initialMode !== undefined && !MODES.includes(initialMode)) throw new CliError(`--ecds-mode must be ${MODES.join(' or ')}`, 2);
    const { ecds, serve } = await ecdsService(log, closers);
    const publishAll = (mode?: string) => manifests.map((m) => ecds.publish(m, mode ? { configuration: { mode } } : {}));
    const [first] = publishing(() => publishAll(initialMode));
    return {
      setup(ctx) {
        if (manifests.length === 1) ctx.servedPolicySha256 = () => ecds.published(first!.resource)?.sha256;
        serve(ctx);
        for (const m of manifests) ecds.watch(m);
        ctx.adminPlugins.push(async (app) => {
          // Body (optional): { "mode": "enforce" | "dry-run" } switches the mode of every served policy.
          app.post('/v1/ecds/publish', async (request, reply) => {
            const body = (request.body ?? {}) as Record<string, unknown>;
            const extra = Object.keys(body).filter((k) => k !== 'mode');
            if (typeof body !== 'object' || Array.isArray(body) || extra.length || (body.mode !== undefined && !MODES.includes(body.mode as string))) {
              return reply.status(400).send({ error: { code: 'bad_request', message: `body must be {} or { "mode": "${MODES.join('" | "')}" }` } });
            }
            try {
              return { published: publishAll(body.mode as string | undefined).map(({ resource, version, sha256, configuration }) => ({ resource, version, sha256, configuration })) };
            } catch (err) {
              return reply.status(409).send({ error: { code: 'policy_not_published', message: (err as Error).message } });
            }
          });
        });
      },
    };
  },
};

/**
 * The agent's ECDS server (for --ecds-policy, or --control in Envoy mode), closed with the
 * agent; `serve` adds it to the --sds socket and its push, ACK and NACK counters to /metrics.
 */
export async function ecdsService(log: PrepareContext['log'], closers: PrepareContext['closers'], hooks: EcdsOptions = {}) {
  // Loaded here, not at start-up: an agent that serves no filter to Envoy never needs ECDS.
  const { EcdsServer } = await import('../agent/xds/ecds.ts');
  // Counted from the first publish on, registered with the agent's metrics once it has joined.
  const counter = (name: string, help: string) => new Counter({ name, help, registers: [] });
  const counters = [
    counter('palisade_agent_ecds_publishes_total', 'Policy versions published over ECDS'),
    counter('palisade_agent_ecds_acks_total', 'ECDS responses accepted by Envoy'),
    counter('palisade_agent_ecds_nacks_total', 'ECDS responses rejected by Envoy (previous version kept)'),
  ];
  const [pushes, acks, nacks] = counters;
  const ecds: Ecds = new EcdsServer({
    log,
    ...hooks,
    onPublish: (p) => (pushes!.inc(), hooks.onPublish?.(p)),
    onAck: (...a) => (acks!.inc(), hooks.onAck?.(...a)),
    onNack: (r) => (nacks!.inc(), hooks.onNack?.(r)),
  });
  closers.push(() => ecds.close());
  return {
    ecds,
    serve(ctx: AgentContext) {
      for (const metric of counters) ctx.agent.metrics.registerMetric(metric);
      ctx.xdsServices.push(ecds.service);
    },
  };
}

/** A manifest or filter that cannot be published before the agent joins: one line, exit 2. */
function publishing<T>(run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (err instanceof ManifestError) throw new CliError(err.message, 2);
    throw err;
  }
}
