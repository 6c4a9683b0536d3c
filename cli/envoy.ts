import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { writeAtomically } from './process.ts';
import { bootstrapFor } from '../envoy/edge.ts';
import { ManifestError } from '../envoy/manifest.ts';
import { bootstrapOptions, DEFAULTS, OptionError, type BootstrapInput } from '../envoy/options.ts';
import { InvalidEnvoyConfigError, parseEnvoyConfig, renderBootstrap, type ConfigFormat } from '../envoy/render.ts';
import { errorsOf, formatIssues, validateEnvoyConfig } from '../envoy/validate.ts';

/** `palisade envoy bootstrap` writes a validated Envoy bootstrap; `palisade envoy validate` checks any Envoy config. */
export function register(program: Command): void {
  const envoy = program.command('envoy').description('Envoy as the data plane: bootstrap generation and validation against Envoy\'s protos');

  envoy.command('bootstrap')
    .description('write a complete Envoy bootstrap for one workload (validated against Envoy\'s v3 protos)')
    .option('--policy <manifest>', 'compiled policy manifest (build/<name>.manifest.json): policy name and service SPIFFE ID')
    .option('--out <file>', 'write to FILE (atomically) instead of stdout')
    .option('--format <format>', 'yaml or json', 'yaml')
    .option('--service-name <name>', 'node id, stats and trace service name (default: the policy name)')
    .option('--spiffe-id <id>', 'this workload\'s SPIFFE ID (default: the policy\'s service)')
    .option('--trust-domain <td>', 'trust domain peers must belong to (default: from the SPIFFE ID)')
    .option('--inbound-address <ip>', 'address of the mTLS inbound listener', DEFAULTS.inboundAddress)
    .option('--inbound-port <port>', 'port of the mTLS inbound listener', String(DEFAULTS.inboundPort))
    .option('--app-address <ip>', 'address of the local application', DEFAULTS.appAddress)
    .option('--app-port <port>', 'port of the local application', String(DEFAULTS.appPort))
    .option('--outbound-port <port>', 'loopback port of the outbound listener', String(DEFAULTS.outboundPort))
    .option('--admin-port <port>', 'loopback port of Envoy\'s admin interface', String(DEFAULTS.adminPort))
    .option('--sds-socket <path>', 'the agent\'s Unix socket (SDS and ECDS)', DEFAULTS.sdsSocket)
    .option('--ca-jwks-url <url>', 'the CA\'s JWKS of live SVID keys (fingerprint verification)', DEFAULTS.caJwksUrl)
    .option('--identity-issuer <iss>', 'issuer of identity-context tokens (Authorization: Bearer)')
    .option('--identity-jwks-uri <url>', 'JWKS of the identity issuer')
    .option('--identity-audience <aud...>', 'accepted audiences of identity-context tokens')
    .option('--system-ca-file <file>', 'CA bundle for the identity issuer\'s JWKS endpoint', DEFAULTS.systemCaFile)
    .option('--routes <file>', 'services the application calls: { "name": { "url": "https://…", "spiffeId": "spiffe://…" } }')
    .option('--egress-filter <wasm>', 'the egress fingerprint filter', DEFAULTS.egressFilter)
    .option('--signer-url <url>', 'the agent\'s loopback fingerprint signing endpoint', DEFAULTS.signerUrl)
    .option('--strip-header <name...>', 'request headers removed before any filter (default: Palisade\'s identity headers)')
    .option('--edge', 'the edge in Envoy mode: an HTTPS listener whose requests the agent authenticates (palisade agent --edge-envoy) and sends into the mesh')
    .option('--edge-routes <file>', 'with --edge: the edge routes file the agent reads too')
    .option('--edge-address <ip>', 'with --edge: address of the clients\' HTTPS listener (default 127.0.0.1)')
    .option('--edge-port <port>', 'with --edge: its port (default 8443)')
    .option('--audit', 'send every inbound decision and its evidence to the agent\'s audit log (palisade agent --audit-dir)')
    .action((opts: BootstrapInput & { out?: string; format: string }) => {
      const format = configFormat(opts.format);
      const text = withCliErrors(() => renderBootstrap(bootstrapFor(bootstrapOptions(opts)), format));
      if (opts.out) writeAtomically(opts.out, text);
      else process.stdout.write(text);
    });

  envoy.command('validate')
    .description('check Envoy configuration files (YAML or JSON bootstrap) against Envoy\'s v3 protos')
    .argument('<file...>')
    .option('--type <message>', 'message type of the document', 'envoy.config.bootstrap.v3.Bootstrap')
    .action((files: string[], opts: { type: string }) => {
      let failed = false;
      for (const file of files) {
        const issues = withCliErrors(() => validateEnvoyConfig(parseConfigFile(file), opts.type));
        if (issues.length) process.stderr.write(`${formatIssues(issues).replace(/^/gm, `${file}: `)}\n`);
        failed ||= errorsOf(issues).length > 0;
      }
      if (failed) throw new CliError('', 1);
    });
}

function configFormat(format: string): ConfigFormat {
  if (format !== 'yaml' && format !== 'json') throw new CliError(`--format must be yaml or json, not '${format}'`, 2);
  return format;
}

function parseConfigFile(file: string): unknown {
  try {
    return parseEnvoyConfig(readFileSync(file, 'utf8'), file);
  } catch (err) {
    throw new CliError(`${file}: ${(err as Error).message}`, 2);
  }
}

function withCliErrors<T>(run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (err instanceof OptionError || err instanceof ManifestError) throw new CliError(err.message, 2);
    if (err instanceof InvalidEnvoyConfigError) throw new CliError(err.message, 1);
    if (err instanceof Error && /no such type/.test(err.message)) throw new CliError(err.message, 2);
    throw err;
  }
}
