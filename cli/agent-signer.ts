/**
 * `palisade agent --egress-signer`: serves POST /v1/fingerprint (sign-endpoint.ts) on the
 * agent's --admin endpoint, for Envoy's egress filter. The bootstrap's default signer URL
 * is http://127.0.0.1:15090/v1/fingerprint, so `--admin 127.0.0.1:15090 --egress-signer`.
 */
import { CliError } from './errors.ts';
import type { AgentOptionGroup } from './agent-group.ts';
import { FINGERPRINT_TTL_SECONDS } from '../spiffe/fingerprint-limits.ts';

export const signerAgentGroup: AgentOptionGroup = {
  addOptions(command) {
    command.option('--egress-signer', 'serve POST /v1/fingerprint on --admin: fingerprints for Envoy\'s egress filter, signed with the in-memory SVID key');
  },
  prepare(opts) {
    if (!opts.egressSigner) return;
    if (!opts.admin) throw new CliError('--egress-signer needs --admin HOST:PORT (loopback), where Envoy\'s signer cluster points', 2);
    // --fingerprint-ttl belongs to the sidecar group; both sign with the same lifetime.
    const ttlSeconds = Number(opts.fingerprintTtl ?? FINGERPRINT_TTL_SECONDS);
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > 3600) throw new CliError('--fingerprint-ttl must be a whole number of seconds (1–3600)', 2);
    return {
      // Loaded only for an agent that signs for Envoy.
      async setup(ctx) {
        const { signEndpoint } = await import('../agent/sidecar/sign-endpoint.ts');
        ctx.adminPlugins.push(signEndpoint({ identity: ctx.agent, ttlSeconds, registry: ctx.agent.metrics }));
      },
    };
  },
};
