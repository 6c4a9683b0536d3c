import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { DEFAULT_STRIP_HEADERS, policyResourceName, type BootstrapOptions, type OutboundRoute } from './bootstrap.ts';
import { ManifestError, readManifest, type PolicyArtifact } from './manifest.ts';

/** What a user may say on the command line; everything has a default. */
export interface BootstrapInput {
  policy?: string;
  serviceName?: string;
  spiffeId?: string;
  trustDomain?: string;
  inboundAddress?: string;
  inboundPort?: number | string;
  appAddress?: string;
  appPort?: number | string;
  outboundPort?: number | string;
  adminPort?: number | string;
  sdsSocket?: string;
  caJwksUrl?: string;
  identityIssuer?: string;
  identityJwksUri?: string;
  identityAudience?: string[];
  systemCaFile?: string;
  egressFilter?: string;
  signerUrl?: string;
  routes?: string;
  stripHeader?: string[];
  audit?: boolean;
  /** Envoy mode of the edge: the agent's ext_authz decides, the routes file names the services. */
  edge?: boolean;
  edgeRoutes?: string;
  edgeAddress?: string;
  edgePort?: number | string;
}

export class OptionError extends Error {}

export const DEFAULTS = {
  serviceName: 'service',
  trustDomain: 'example.org',
  inboundAddress: '0.0.0.0',
  inboundPort: 15006,
  appAddress: '127.0.0.1',
  appPort: 8080,
  outboundPort: 15001,
  adminPort: 9901,
  sdsSocket: '/run/palisade/agent.sock',
  caJwksUrl: 'https://127.0.0.1:8443/v1/jwks',
  systemCaFile: '/etc/ssl/certs/ca-certificates.crt',
  egressFilter: 'build/egress.wasm',
  signerUrl: 'http://127.0.0.1:15090/v1/fingerprint',
  edgeAddress: '127.0.0.1',
  edgePort: 8443,
} as const;

const SPIFFE_ID = /^spiffe:\/\/([a-z0-9._-]+)(\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$/;
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const HEADER_NAME = /^[!#$%&'*+\-.^`|~0-9a-z]+$/;

/**
 * Fills in defaults and checks every value before any YAML is written. The policy manifest
 * provides the policy name and, when recorded, the service's SPIFFE ID; an explicit
 * option wins over the manifest.
 */
export function bootstrapOptions(input: BootstrapInput): BootstrapOptions {
  const artifact = input.policy ? manifest(input.policy) : undefined;
  const serviceName = input.serviceName ?? artifact?.name ?? DEFAULTS.serviceName;
  const spiffeId = input.spiffeId ?? artifact?.service
    ?? `spiffe://${input.trustDomain ?? DEFAULTS.trustDomain}/ns/default/sa/${serviceName}`;
  const idMatch = SPIFFE_ID.exec(spiffeId);
  if (!idMatch) throw new OptionError(`--spiffe-id: '${spiffeId}' is not a SPIFFE ID (spiffe://trust-domain/path)`);
  const trustDomain = input.trustDomain ?? idMatch[1]!;
  if (!TRUST_DOMAIN.test(trustDomain)) throw new OptionError(`--trust-domain: '${trustDomain}' is not a valid trust domain`);
  if (idMatch[1] !== trustDomain) throw new OptionError(`--spiffe-id ${spiffeId} is not in trust domain ${trustDomain}`);
  if (!/^[A-Za-z0-9._-]+$/.test(serviceName)) throw new OptionError(`--service-name: '${serviceName}' may contain only letters, digits, '.', '_' and '-'`);
  return {
    serviceName,
    spiffeId,
    trustDomain,
    policyResource: policyResourceName(artifact?.name ?? serviceName),
    inboundAddress: ipAddress('--inbound-address', input.inboundAddress ?? DEFAULTS.inboundAddress),
    inboundPort: port('--inbound-port', input.inboundPort ?? DEFAULTS.inboundPort),
    appAddress: ipAddress('--app-address', input.appAddress ?? DEFAULTS.appAddress),
    appPort: port('--app-port', input.appPort ?? DEFAULTS.appPort),
    outboundPort: port('--outbound-port', input.outboundPort ?? DEFAULTS.outboundPort),
    adminPort: port('--admin-port', input.adminPort ?? DEFAULTS.adminPort),
    sdsSocket: absolutePath('--sds-socket', input.sdsSocket ?? DEFAULTS.sdsSocket),
    caJwksUrl: url('--ca-jwks-url', input.caJwksUrl ?? DEFAULTS.caJwksUrl, ['https:']),
    identity: identity(input),
    systemCaFile: input.systemCaFile ?? DEFAULTS.systemCaFile,
    egressFilter: input.egressFilter ?? DEFAULTS.egressFilter,
    signerUrl: loopbackHttp('--signer-url', input.signerUrl ?? DEFAULTS.signerUrl),
    routes: input.routes ? readRoutes('--routes', input.routes, trustDomain, (name) => /^[a-z0-9.-]+$/.test(name)) : {},
    stripHeaders: (input.stripHeader ?? DEFAULT_STRIP_HEADERS).map(headerName),
    audit: input.audit ?? false,
    edge: edge(input, trustDomain),
  };
}

/** `--edge` needs `--edge-routes`, and the edge flags need `--edge`. */
function edge(input: BootstrapInput, trustDomain: string): BootstrapOptions['edge'] {
  if (!input.edge) {
    if (input.edgeRoutes || input.edgeAddress || input.edgePort) throw new OptionError('--edge-routes, --edge-address and --edge-port need --edge');
    return undefined;
  }
  if (!input.edgeRoutes) throw new OptionError('--edge needs --edge-routes FILE (the file the agent\'s --edge-envoy reads)');
  return {
    address: ipAddress('--edge-address', input.edgeAddress ?? DEFAULTS.edgeAddress),
    port: port('--edge-port', input.edgePort ?? DEFAULTS.edgePort),
    // Named as the agent names them (agent/edge/routes.ts): `route-<i>` in file order.
    routes: Object.fromEntries(Object.values(readRoutes('--edge-routes', input.edgeRoutes, trustDomain, () => true)).map((r, i) => [`route-${i}`, r])),
  };
}

function manifest(file: string): PolicyArtifact {
  try {
    return readManifest(file);
  } catch (err) {
    throw err instanceof ManifestError ? new OptionError(`--policy: ${err.message}`) : err;
  }
}

/** The identity context is all or nothing: issuer, JWKS and at least one audience. */
function identity(input: BootstrapInput): BootstrapOptions['identity'] {
  const { identityIssuer: issuer, identityJwksUri: jwksUri, identityAudience: audiences = [] } = input;
  if (!issuer && !jwksUri && audiences.length === 0) return undefined;
  if (!issuer || !jwksUri || audiences.length === 0) {
    throw new OptionError('--identity-issuer, --identity-jwks-uri and --identity-audience go together: give all three or none');
  }
  return { issuer, jwksUri: url('--identity-jwks-uri', jwksUri, ['https:', 'http:']), audiences };
}

/**
 * The sidecar's routes file, `{ "card": { "url": "https://…", "spiffeId": "spiffe://…" } }`,
 * or the edge's (keys are path prefixes, checked by the agent that reads the same file).
 */
function readRoutes(flag: string, file: string, trustDomain: string, validName: (name: string) => boolean): Record<string, OutboundRoute> {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new OptionError(`${flag}: cannot read ${file}: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new OptionError(`${flag}: ${file} must hold a JSON object`);
  const routes: Record<string, OutboundRoute> = {};
  for (const [name, r] of Object.entries(doc as Record<string, any>)) {
    if (!validName(name)) throw new OptionError(`${flag}: service name '${name}' must be a lowercase host name`);
    const id = SPIFFE_ID.exec(String(r?.spiffeId ?? ''));
    if (!id || id[1] !== trustDomain) throw new OptionError(`${flag}: ${name}.spiffeId must be a SPIFFE ID in ${trustDomain}`);
    routes[name] = { url: url(`${flag}: ${name}.url`, String(r.url ?? ''), ['https:']), spiffeId: r.spiffeId };
  }
  return routes;
}

function port(flag: string, value: number | string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new OptionError(`${flag}: '${value}' is not a port number (1-65535)`);
  return n;
}

function ipAddress(flag: string, value: string): string {
  if (!isIP(value)) throw new OptionError(`${flag}: '${value}' is not an IP address`);
  return value;
}

function absolutePath(flag: string, value: string): string {
  if (!value.startsWith('/')) throw new OptionError(`${flag}: '${value}' must be an absolute path`);
  return value;
}

function url(flag: string, value: string, schemes: string[]): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new OptionError(`${flag}: '${value}' is not a URL`);
  }
  if (!schemes.includes(u.protocol)) throw new OptionError(`${flag}: '${value}' must use ${schemes.join(' or ')}`);
  return value;
}

/** The signer holds no secret on the wire but must not leave the host: plain HTTP to loopback only. */
function loopbackHttp(flag: string, value: string): string {
  const u = new URL(url(flag, value, ['http:']));
  if (u.hostname !== '127.0.0.1' && u.hostname !== '[::1]') throw new OptionError(`${flag}: '${value}' must be on 127.0.0.1 or [::1]`);
  return value;
}

function headerName(name: string): string {
  const lower = name.toLowerCase();
  if (!HEADER_NAME.test(lower)) throw new OptionError(`--strip-header: '${name}' is not a header name`);
  return lower;
}
