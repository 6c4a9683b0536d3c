import { FINGERPRINT_HEADER } from '../spiffe/fingerprint.ts';
import {
  AGENT_CLUSTER, DEFAULT_STRIP_HEADERS, SIGNER_CLUSTER, agentCluster, bundleValidation, commonTls, egressFilter, httpConnectionManager,
  generateBootstrap, router, socketAddress, tlsSocket, typed, uriSan, urlCluster, type BootstrapOptions, type EdgeBootstrap, type Json,
} from './bootstrap.ts';

/**
 * The edge in Envoy mode (docs/envoy.md, "The edge in Envoy mode"): an HTTPS listener for
 * clients outside the mesh (the edge's SVID from SDS), whose every request goes first to the
 * agent's ext_authz service on its socket (`palisade agent --edge-envoy`). The agent
 * verifies the bearer token with the Node edge's code, picks the route and answers with the
 * minted identity context as `authorization` and the route's name as `:authority`; Envoy
 * then routes on that name only, the egress filter signs the fingerprint for that route's
 * service (binding the context), and the cluster opens mTLS requiring that service's SPIFFE ID.
 */
/** Client headers that could pass for the perimeter's own: removed before any filter runs. */
export const EDGE_STRIP_HEADERS = [...DEFAULT_STRIP_HEADERS, FINGERPRINT_HEADER, 'x-palisade-context', 'x-forwarded-client-cert'];

/** The bootstrap the options ask for: the edge's with `--edge`, else the workload's. */
export function bootstrapFor(o: BootstrapOptions): Json {
  return o.edge ? generateEdgeBootstrap({ ...o, edge: o.edge }) : generateBootstrap(o);
}

export function generateEdgeBootstrap(o: BootstrapOptions & { edge: EdgeBootstrap }): Json {
  const clusters = [
    agentCluster(o.sdsSocket),
    urlCluster(SIGNER_CLUSTER, o.signerUrl),
    ...Object.entries(o.edge.routes).map(([name, r]) => urlCluster(edgeCluster(name), r.url, bundleValidation([uriSan({ exact: r.spiffeId })]), true)),
  ];
  return {
    node: { id: o.serviceName, cluster: o.serviceName },
    admin: { address: socketAddress('127.0.0.1', o.adminPort) },
    static_resources: { listeners: [edgeListener(o)], clusters },
  };
}

function edgeListener(o: BootstrapOptions & { edge: EdgeBootstrap }): Json {
  // Only the names the agent answers with route anywhere: a client's own Host matches nothing.
  const virtualHosts = Object.keys(o.edge.routes).map((name) => ({
    name,
    domains: [name],
    routes: [{ match: { prefix: '/' }, route: { cluster: edgeCluster(name) } }],
  }));
  const hcm = httpConnectionManager('edge_http', { serviceName: o.serviceName, stripHeaders: [...new Set([...EDGE_STRIP_HEADERS, ...o.stripHeaders])] }, {
    route_config: { name: 'edge', virtual_hosts: virtualHosts },
    forward_client_cert_details: 'SANITIZE',
    http_filters: [extAuthz(), egressFilter({ signerUrl: o.signerUrl, egressFilter: o.egressFilter, routes: o.edge.routes }), router()],
  });
  return {
    name: 'edge',
    address: socketAddress(o.edge.address, o.edge.port),
    per_connection_buffer_limit_bytes: 32768,
    filter_chains: [{
      filters: [hcm],
      // Clients outside the mesh: no client certificate; TLS 1.2 as the Node edge accepts.
      transport_socket: tlsSocket('DownstreamTlsContext', { common_tls_context: { ...commonTls({}), tls_params: { tls_minimum_protocol_version: 'TLSv1_2' } } }),
    }],
  };
}

/**
 * Every request to the agent, never past it: fail closed, only `authorization` sent (method,
 * path and host travel as attributes), and the agent may set `:authority` (a routing header,
 * so it is allowed explicitly and the route is recomputed).
 */
function extAuthz(): Json {
  return typed('envoy.filters.http.ext_authz', 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz', {
    grpc_service: { envoy_grpc: { cluster_name: AGENT_CLUSTER }, timeout: '5s' },
    transport_api_version: 'V3',
    failure_mode_allow: false,
    status_on_error: { code: 503 },
    clear_route_cache: true,
    allowed_headers: { patterns: [{ exact: 'authorization' }] },
    decoder_header_mutation_rules: { allow_all_routing: true, disallow_is_error: true },
  });
}

function edgeCluster(route: string): string {
  return `edge_${route}`;
}
