import path from 'node:path';
import { isIP } from 'node:net';
import { TYPE_URL_PREFIX } from './validate.ts';
import { DEFAULT_SKEW_SECONDS, DEFAULT_TTL_SECONDS, FINGERPRINT_HEADER } from '../spiffe/fingerprint.ts';
import { AUDIT_LOG_NAME, DECISION_STATE, FINGERPRINT_METADATA, LOGGED_REQUEST_HEADERS } from './access-log.ts';

/**
 * The Envoy bootstrap for one workload: an mTLS inbound listener in front of the local
 * application (jwt_authn, then the compiled policy delivered by ECDS, then the router), a
 * loopback outbound listener that adds fingerprints and opens mTLS to other services, and
 * everything secret (SVID, trust bundle) and policy (wasm) coming from the agent's socket.
 */
export interface OutboundRoute {
  /** `https://host:port` of the target's inbound listener. */
  url: string;
  /** SPIFFE ID the target must present. */
  spiffeId: string;
}

/** The edge's listener and routes in Envoy mode (edge.ts). */
export interface EdgeBootstrap {
  address: string;
  port: number;
  /** The edge routes file's entries, named `route-<i>` in file order as the agent names them. */
  routes: Record<string, OutboundRoute>;
}

export interface IdentityContextOptions {
  issuer: string;
  jwksUri: string;
  audiences: string[];
}

export interface BootstrapOptions {
  serviceName: string;
  spiffeId: string;
  trustDomain: string;
  /** ECDS resource name of the policy filter, `palisade.policy.<policy name>`. */
  policyResource: string;
  inboundAddress: string;
  inboundPort: number;
  appAddress: string;
  appPort: number;
  outboundPort: number;
  adminPort: number;
  /** The agent's Unix socket serving SDS and ECDS. */
  sdsSocket: string;
  /** The CA's JWKS of live SVID keys (fingerprint verification). */
  caJwksUrl: string;
  /** The edge issuer of identity-context tokens; absent: no `user` claims ever reach the filter. */
  identity?: IdentityContextOptions;
  /** CA file used to verify the identity issuer's JWKS endpoint. */
  systemCaFile: string;
  /** The egress fingerprint filter (a fixed .wasm shipped with Palisade). */
  egressFilter: string;
  /** The agent's local endpoint that signs fingerprints with the in-memory SVID key. */
  signerUrl: string;
  /** Services the application may call through the outbound listener, by Host name. */
  routes: Record<string, OutboundRoute>;
  /** Request headers removed before any filter sees them (a client could forge them). */
  stripHeaders: string[];
  /** Send every inbound decision with its evidence to the agent's audit log (access-log service on the agent's socket). */
  audit: boolean;
  /** Envoy mode of the edge (edge.ts): this bootstrap is the edge's, not a workload's. */
  edge?: EdgeBootstrap;
}

const CA_JWKS_REFRESH = '5s';
/**
 * Palisade's identity headers towards the application. Envoy can remove headers only by
 * exact name, not by prefix; the fingerprint itself is removed by jwt_authn (`forward: false`).
 */
export const DEFAULT_STRIP_HEADERS = ['x-palisade-caller', 'x-palisade-user', 'x-palisade-claims'];

export const WASM_TYPE = 'envoy.extensions.filters.http.wasm.v3.Wasm';
export const AGENT_CLUSTER = 'sds-grpc';
const APP_CLUSTER = 'local_app';
const CA_CLUSTER = 'palisade_ca';
const IDENTITY_CLUSTER = 'identity_jwks';
export const SIGNER_CLUSTER = 'palisade_signer';
const SVID_SECRET = 'default';
const BUNDLE_SECRET = 'ROOTCA';

export type Json = Record<string, unknown>;

export function policyResourceName(policyName: string): string {
  return `palisade.policy.${policyName}`;
}

export function generateBootstrap(o: BootstrapOptions): Json {
  const clusters = [
    agentCluster(o.sdsSocket),
    staticCluster(APP_CLUSTER, o.appAddress, o.appPort),
    // The CA's server certificate chains to the same root as every SVID: pin its host name too,
    // or any workload could pose as the CA and publish keys for fingerprints.
    urlCluster(CA_CLUSTER, o.caJwksUrl, bundleValidation([hostSan(o.caJwksUrl)])),
    urlCluster(SIGNER_CLUSTER, o.signerUrl),
    ...(o.identity ? [urlCluster(IDENTITY_CLUSTER, o.identity.jwksUri, systemValidation(o.identity.jwksUri, o.systemCaFile))] : []),
    ...Object.entries(o.routes).map(([name, r]) => urlCluster(outboundCluster(name), r.url, bundleValidation([uriSan({ exact: r.spiffeId })]), true)),
  ];
  return {
    node: { id: o.serviceName, cluster: o.serviceName },
    admin: { address: socketAddress('127.0.0.1', o.adminPort) },
    static_resources: { listeners: [inboundListener(o), outboundListener(o)], clusters },
  };
}

function inboundListener(o: BootstrapOptions): Json {
  const hcm = httpConnectionManager('inbound_http', o, {
    route_config: {
      name: 'inbound',
      virtual_hosts: [{ name: 'app', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: APP_CLUSTER } }] }],
    },
    // The application learns the verified caller from XFCC; a client's own XFCC is dropped.
    // The audit log needs the caller's certificate itself: XFCC carries it to the access log.
    forward_client_cert_details: 'SANITIZE_SET',
    set_current_client_cert_details: o.audit ? { uri: true, cert: true } : { uri: true },
    http_filters: [...(o.audit ? [fingerprintToMetadata()] : []), jwtAuthn(o), policyFilter(o), router()],
    ...(o.audit ? { access_log: [auditLogger()] } : {}),
  });
  return {
    name: 'inbound',
    address: socketAddress(o.inboundAddress, o.inboundPort),
    // Envoy's edge recommendation: bound what one untrusted connection may buffer.
    per_connection_buffer_limit_bytes: 32768,
    filter_chains: [{
      filters: [hcm],
      transport_socket: tlsSocket('DownstreamTlsContext', {
        require_client_certificate: true,
        common_tls_context: commonTls(bundleValidation([uriSan({ prefix: `spiffe://${o.trustDomain}/` })])),
      }),
    }],
  };
}

function outboundListener(o: BootstrapOptions): Json {
  const virtualHosts = Object.keys(o.routes).sort().map((name) => ({
    name,
    domains: [name],
    routes: [{ match: { prefix: '/' }, route: { cluster: outboundCluster(name) } }],
  }));
  const hcm = httpConnectionManager('outbound_http', o, {
    route_config: { name: 'outbound', virtual_hosts: virtualHosts },
    strip_any_host_port: true, // `Host: card:15001` routes like `Host: card`
    http_filters: [egressFilter(o), router()],
  });
  return { name: 'outbound', address: socketAddress('127.0.0.1', o.outboundPort), filter_chains: [{ filters: [hcm] }] };
}

/** Envoy's safe path handling and header hygiene, shared by both directions. */
export function httpConnectionManager(statPrefix: string, o: Pick<BootstrapOptions, 'serviceName' | 'stripHeaders'>, specific: Json): Json {
  return typed('envoy.filters.network.http_connection_manager', 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
    stat_prefix: statPrefix,
    codec_type: 'AUTO',
    normalize_path: true,
    merge_slashes: true,
    path_with_escaped_slashes_action: 'REJECT_REQUEST',
    // `x_palisade_user` must not become a second spelling of `x-palisade-user` upstream.
    common_http_protocol_options: { headers_with_underscores_action: 'REJECT_REQUEST' },
    use_remote_address: true,
    // Slowloris: a client gets 10 s to send its headers (Envoy's default is no limit).
    request_headers_timeout: '10s',
    early_header_mutation_extensions: [typed('envoy.http.early_header_mutation.header_mutation',
      'envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation',
      { mutations: o.stripHeaders.map((name) => ({ remove: name })) })],
    // W3C trace context: the OpenTelemetry tracer reads and writes `traceparent`; no exporter.
    tracing: {
      provider: typed('envoy.tracers.opentelemetry', 'envoy.config.trace.v3.OpenTelemetryConfig', { service_name: o.serviceName }),
    },
    ...specific,
  });
}

/**
 * Fingerprint required; the identity context optional but, when present, valid
 * (`requires_any: [user, allow_missing]`): the policy filter sees only verified claims.
 */
function jwtAuthn(o: BootstrapOptions): Json {
  const providers: Json = {
    fingerprint: {
      audiences: [o.spiffeId],
      subjects: { prefix: `spiffe://${o.trustDomain}/` },
      require_expiration: true,
      max_lifetime: `${DEFAULT_TTL_SECONDS}s`, // as the sidecar: the protocol's lifetime and skew
      clock_skew_seconds: DEFAULT_SKEW_SECONDS,
      from_headers: [{ name: FINGERPRINT_HEADER }],
      forward: false,
      payload_in_metadata: 'fingerprint',
      // A caller signs with its new key right after rotation, and jwt_authn does not refetch
      // on an unknown kid: refresh in the background as often as the CA allows (max-age=5).
      remote_jwks: remoteJwks(o.caJwksUrl, CA_CLUSTER, CA_JWKS_REFRESH),
    },
  };
  let requires: Json = { provider_name: 'fingerprint' };
  if (o.identity) {
    providers.user = {
      issuer: o.identity.issuer,
      audiences: o.identity.audiences,
      from_headers: [{ name: 'authorization', value_prefix: 'Bearer ' }],
      forward: true,
      payload_in_metadata: 'user',
      remote_jwks: remoteJwks(o.identity.jwksUri, IDENTITY_CLUSTER, '300s'),
    };
    requires = {
      requires_all: {
        requirements: [requires, { requires_any: { requirements: [{ provider_name: 'user' }, { allow_missing: {} }] } }],
      },
    };
  }
  return typed('envoy.filters.http.jwt_authn', 'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication', {
    providers,
    rules: [{ match: { prefix: '/' }, requires }],
  });
}

/**
 * The fingerprint JWS as dynamic metadata, for the audit log: jwt_authn verifies it and then
 * removes the header (`forward: false`), so the access log would never see it. Copied before
 * jwt_authn runs; an entry is written only for what jwt_authn and the policy then accepted.
 */
function fingerprintToMetadata(): Json {
  return typed('envoy.filters.http.header_to_metadata', 'envoy.extensions.filters.http.header_to_metadata.v3.Config', {
    request_rules: [{
      header: FINGERPRINT_HEADER,
      on_header_present: { metadata_namespace: FINGERPRINT_METADATA.namespace, key: FINGERPRINT_METADATA.key, type: 'STRING' },
      remove: false,
    }],
  });
}

/**
 * Envoy's gRPC access logger to the agent's socket: each inbound request with the policy's
 * decision record (filter state), jwt_authn's verified payloads and the fingerprint (dynamic
 * metadata, always sent) and the headers the audit entry needs.
 */
function auditLogger(): Json {
  return typed('envoy.access_loggers.http_grpc', 'envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig', {
    common_config: {
      log_name: AUDIT_LOG_NAME,
      grpc_service: { envoy_grpc: { cluster_name: AGENT_CLUSTER } },
      transport_api_version: 'V3',
      filter_state_objects_to_log: [DECISION_STATE],
    },
    additional_request_headers_to_log: [...LOGGED_REQUEST_HEADERS],
  });
}

function remoteJwks(uri: string, cluster: string, cacheDuration: string): Json {
  return {
    http_uri: { uri, cluster, timeout: '5s' },
    cache_duration: cacheDuration,
    async_fetch: { fast_listener: false },
    retry_policy: { num_retries: 3 },
  };
}

/** The compiled policy, from the agent over ECDS; until it arrives the listener is not ready. */
function policyFilter(o: BootstrapOptions): Json {
  return {
    name: o.policyResource,
    config_discovery: {
      config_source: agentConfigSource(),
      type_urls: [TYPE_URL_PREFIX + WASM_TYPE],
    },
  };
}

export function egressFilter(o: Pick<BootstrapOptions, 'signerUrl' | 'egressFilter' | 'routes'>): Json {
  const signer = new URL(o.signerUrl);
  const targets = Object.fromEntries(Object.entries(o.routes).map(([name, r]) => [name, r.spiffeId]));
  const configuration = { signer_cluster: SIGNER_CLUSTER, signer_authority: signer.host, signer_path: signer.pathname, targets };
  return typed('envoy.filters.http.wasm', WASM_TYPE, wasmFilterConfig('palisade.egress', path.resolve(o.egressFilter), JSON.stringify(configuration)));
}

/**
 * An `envoy.extensions.filters.http.wasm.v3.Wasm` (proto3 JSON) running `filename` on V8 with
 * a JSON plugin configuration; never fail-open. Shared by the egress filter and ECDS.
 */
export function wasmFilterConfig(name: string, filename: string, configuration: string): Json {
  return {
    config: {
      name,
      root_id: name,
      vm_config: { vm_id: name, runtime: 'envoy.wasm.runtime.v8', code: { local: { filename } } },
      configuration: { '@type': TYPE_URL_PREFIX + 'google.protobuf.StringValue', value: configuration },
      fail_open: false,
    },
  };
}

export function router(): Json {
  return typed('envoy.filters.http.router', 'envoy.extensions.filters.http.router.v3.Router', {});
}

function agentConfigSource(): Json {
  return {
    resource_api_version: 'V3',
    api_config_source: {
      api_type: 'GRPC',
      transport_api_version: 'V3',
      grpc_services: [{ envoy_grpc: { cluster_name: AGENT_CLUSTER } }],
    },
  };
}

function sdsSecret(name: string): Json {
  return { name, sds_config: agentConfigSource() };
}

/** SVID from SDS `default`; peers verified against SDS `ROOTCA` and the given URI SAN matchers. */
export function commonTls(validation: Json): Json {
  return {
    tls_params: { tls_minimum_protocol_version: 'TLSv1_3' },
    tls_certificate_sds_secret_configs: [sdsSecret(SVID_SECRET)],
    ...validation,
  };
}

/** Peers verified against SDS `ROOTCA` and required to carry one of `sans`. */
export function bundleValidation(sans: Json[]): Json {
  return {
    combined_validation_context: {
      default_validation_context: { match_typed_subject_alt_names: sans },
      validation_context_sds_secret_config: sdsSecret(BUNDLE_SECRET),
    },
  };
}

/** Public issuers (the identity provider's JWKS) are checked against the system CAs and their host name. */
function systemValidation(url: string, caFile: string): Json {
  return { validation_context: { trusted_ca: { filename: caFile }, match_typed_subject_alt_names: [hostSan(url)] } };
}

export function uriSan(matcher: Json): Json {
  return { san_type: 'URI', matcher };
}

function hostSan(url: string): Json {
  const host = hostOf(url);
  return { san_type: isIP(host) ? 'IP_ADDRESS' : 'DNS', matcher: { exact: host } };
}

function hostOf(url: string): string {
  return new URL(url).hostname.replace(/^\[|\]$/g, '');
}

export function agentCluster(socket: string): Json {
  return {
    name: AGENT_CLUSTER,
    type: 'STATIC',
    connect_timeout: '1s',
    typed_extension_protocol_options: http2Options(),
    load_assignment: { cluster_name: AGENT_CLUSTER, endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: socket } } } }] }] },
  };
}

function staticCluster(name: string, address: string, port: number): Json {
  return {
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(address, port) } }] }] },
  };
}

/**
 * A cluster for one URL: STATIC for an IP, STRICT_DNS for a name; TLS for https with the
 * given validation (when `mtls`, presenting our SVID too).
 */
export function urlCluster(name: string, url: string, validation?: Json, mtls = false): Json {
  const u = new URL(url);
  const host = hostOf(url);
  const https = u.protocol === 'https:';
  const port = Number(u.port || (https ? 443 : 80));
  const cluster: Json = { ...staticCluster(name, host, port), type: isIP(host) ? 'STATIC' : 'STRICT_DNS' };
  if (https && validation) {
    const common = mtls ? commonTls(validation) : { tls_params: { tls_minimum_protocol_version: 'TLSv1_2' }, ...validation };
    cluster.transport_socket = tlsSocket('UpstreamTlsContext', { ...(isIP(host) ? {} : { sni: host }), common_tls_context: common });
  }
  return cluster;
}

function http2Options(): Json {
  return {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': TYPE_URL_PREFIX + 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      explicit_http_config: { http2_protocol_options: {} },
    },
  };
}

export function tlsSocket(kind: 'DownstreamTlsContext' | 'UpstreamTlsContext', config: Json): Json {
  return typed('envoy.transport_sockets.tls', `envoy.extensions.transport_sockets.tls.v3.${kind}`, config);
}

export function socketAddress(address: string, port: number): Json {
  return { socket_address: { address, port_value: port } };
}

export function typed(name: string, type: string, config: Json): Json {
  return { name, typed_config: { '@type': TYPE_URL_PREFIX + type, ...config } };
}

function outboundCluster(service: string): string {
  return `outbound_${service}`;
}
