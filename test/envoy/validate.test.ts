import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { errorsOf, validateEnvoyConfig, type Issue } from '../../envoy/validate.ts';

// Each case breaks one thing in an otherwise valid bootstrap and expects exactly that error,
// at its JSON path: the validator must catch what protobufjs' verify lets through.
const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

function bootstrap(): any {
  return {
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 9901 } } },
    static_resources: {
      listeners: [{
        name: 'inbound',
        address: { socket_address: { address: '0.0.0.0', port_value: 15006 } },
        filter_chains: [{
          filters: [{
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': HCM,
              stat_prefix: 'in',
              codec_type: 'AUTO',
              normalize_path: true,
              stream_idle_timeout: '1.5s',
              route_config: { virtual_hosts: [{ name: 'app', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'app' } }] }] },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
            },
          }],
        }],
      }],
      clusters: [{
        name: 'app',
        type: 'STATIC',
        connect_timeout: '1s',
        load_assignment: { cluster_name: 'app', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 8080 } } } }] }] },
      }],
    },
  };
}

const hcmPath = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config';
const hcmOf = (b: any) => b.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;

/** Applies `mutate` to a fresh valid bootstrap and returns the errors. */
function errorsAfter(mutate: (b: any) => void): Issue[] {
  const b = bootstrap();
  mutate(b);
  return errorsOf(validateEnvoyConfig(b));
}

function expectOne(issues: Issue[], path: string, message: RegExp): void {
  assert.is(issues.length, 1, `expected one error, got:\n${issues.map((i) => `${i.path}: ${i.message}`).join('\n')}`);
  assert.is(issues[0]!.path, path);
  assert.match(issues[0]!.message, message);
}

test('the valid base config has no issues at all', () => {
  assert.equal(validateEnvoyConfig(bootstrap()), []);
});

test('unknown field at the top, nested, and inside a typed_config', () => {
  expectOne(errorsAfter((b) => (b.admn = {})), 'admn', /unknown field 'admn' in envoy\.config\.bootstrap\.v3\.Bootstrap; did you mean 'admin'/);
  expectOne(errorsAfter((b) => (b.admin.address.socket_address.prot = 1)), 'admin.address.socket_address.prot', /unknown field 'prot'/);
  expectOne(errorsAfter((b) => (hcmOf(b).normalise_path = true)), `${hcmPath}.normalise_path`, /unknown field 'normalise_path' in .*HttpConnectionManager; did you mean 'normalize_path'/);
});

test('wrong types: scalars, lists, messages, durations, wrappers', () => {
  expectOne(errorsAfter((b) => (b.admin.address.socket_address.port_value = '99x')), 'admin.address.socket_address.port_value', /expected an integer \(uint32\)/);
  expectOne(errorsAfter((b) => (b.admin.address.socket_address.port_value = -1)), 'admin.address.socket_address.port_value', /out of range for uint32/);
  expectOne(errorsAfter((b) => (b.static_resources.listeners = { name: 'x' })), 'static_resources.listeners', /expected a list/);
  expectOne(errorsAfter((b) => (b.admin.address = 'localhost:9901')), 'admin.address', /expected an object \(envoy\.config\.core\.v3\.Address\)/);
  expectOne(errorsAfter((b) => (hcmOf(b).stream_idle_timeout = 5)), `${hcmPath}.stream_idle_timeout`, /expected a duration string/);
  expectOne(errorsAfter((b) => (hcmOf(b).stream_idle_timeout = '5m')), `${hcmPath}.stream_idle_timeout`, /expected a duration string/);
  expectOne(errorsAfter((b) => (hcmOf(b).normalize_path = 'true')), `${hcmPath}.normalize_path`, /expected true or false/);
  expectOne(errorsAfter((b) => (hcmOf(b).route_config.virtual_hosts[0].domains = ['*', 7])), `${hcmPath}.route_config.virtual_hosts[0].domains[1]`, /expected a string/);
});

test('well-known types follow the proto3 JSON mapping', () => {
  const wasm = (configuration: unknown) => errorsAfter((b) => hcmOf(b).http_filters.unshift({
    name: 'envoy.filters.http.wasm',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm',
      config: { vm_config: { runtime: 'envoy.wasm.runtime.v8', code: { local: { filename: '/x.wasm' } } }, configuration },
    },
  }));
  assert.equal(wasm({ '@type': 'type.googleapis.com/google.protobuf.StringValue', value: '{"mode":"enforce"}' }), []);
  expectOne(wasm({ '@type': 'type.googleapis.com/google.protobuf.StringValue', value: { mode: 'enforce' } }),
    `${hcmPath}.http_filters[0].typed_config.config.configuration.value`, /expected a string/);
  expectOne(wasm({ '@type': 'type.googleapis.com/google.protobuf.StringValue', mode: 'enforce', value: '' }),
    `${hcmPath}.http_filters[0].typed_config.config.configuration.mode`, /only "value"/);
  expectOne(wasm({ '@type': 'type.googleapis.com/google.protobuf.Struct', value: ['a'] }),
    `${hcmPath}.http_filters[0].typed_config.config.configuration.value`, /expected an object \(google\.protobuf\.Struct\)/);
  assert.equal(wasm({ '@type': 'type.googleapis.com/google.protobuf.Struct', value: { any: ['json', 1, null] } }), []);
  expectOne(errorsAfter((b) => (b.static_resources.clusters[0].per_connection_buffer_limit_bytes = true)),
    'static_resources.clusters[0].per_connection_buffer_limit_bytes', /expected an integer \(uint32\)/);
});

test('enums by name (or defined number); unknown names are errors', () => {
  assert.equal(errorsAfter((b) => (hcmOf(b).codec_type = 1)), []);
  expectOne(errorsAfter((b) => (hcmOf(b).codec_type = 'HTTP4')), `${hcmPath}.codec_type`, /unknown value 'HTTP4' of enum .*CodecType \(one of AUTO, HTTP1, HTTP2, HTTP3\)/);
  expectOne(errorsAfter((b) => (b.static_resources.clusters[0].type = 'STATC')), 'static_resources.clusters[0].type', /unknown value 'STATC'.*did you mean 'STATIC'/);
  expectOne(errorsAfter((b) => (hcmOf(b).codec_type = 42)), `${hcmPath}.codec_type`, /42 is not a value of enum/);
  expectOne(errorsAfter((b) => (hcmOf(b).codec_type = true)), `${hcmPath}.codec_type`, /expected an enum name/);
});

test('typed_config whose @type names no Envoy message, or is missing', () => {
  expectOne(errorsAfter((b) => (hcmOf(b).http_filters[0].typed_config['@type'] = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Routr')),
    `${hcmPath}.http_filters[0].typed_config["@type"]`, /unresolvable type URL '.*Routr'/);
  expectOne(errorsAfter((b) => delete hcmOf(b).http_filters[0].typed_config['@type']), `${hcmPath}.http_filters[0].typed_config["@type"]`, /missing "@type"/);
  expectOne(errorsAfter((b) => (b.static_resources.listeners[0].filter_chains[0].filters[0].typed_config['@type'] = 'envoy.HttpConnectionManager')),
    `${hcmPath}["@type"]`, /malformed type URL/);
});

test('the message inside an Any is checked recursively, also through TypedStruct', () => {
  expectOne(errorsAfter((b) => (hcmOf(b).http_filters[0].typed_config.suppress_envoy_header = true)),
    `${hcmPath}.http_filters[0].typed_config.suppress_envoy_header`, /unknown field .*did you mean 'suppress_envoy_headers'/);
  const viaTypedStruct = (value: object) => errorsAfter((b) => (hcmOf(b).http_filters[0].typed_config = {
    '@type': 'type.googleapis.com/xds.type.v3.TypedStruct', type_url: ROUTER, value,
  }));
  assert.equal(viaTypedStruct({ suppress_envoy_headers: true }), []);
  expectOne(viaTypedStruct({ dynamic_stats: 'yes' }), `${hcmPath}.http_filters[0].typed_config.value.dynamic_stats`, /expected true or false/);
});

test('two members of one oneof', () => {
  expectOne(errorsAfter((b) => (hcmOf(b).rds = { route_config_name: 'r', config_source: { ads: {} } })), hcmPath, /oneof 'route_specifier' .* route_config and rds|oneof 'route_specifier' .* rds and route_config/);
  expectOne(errorsAfter((b) => (b.static_resources.clusters[0].cluster_type = { name: 'envoy.clusters.aggregate' })),
    'static_resources.clusters[0]', /oneof 'cluster_discovery_type'/);
});

test('snake_case and lowerCamelCase are both Envoy field names, but not at once', () => {
  assert.equal(errorsAfter((b) => {
    b.static_resources.clusters[0].connectTimeout = b.static_resources.clusters[0].connect_timeout;
    delete b.static_resources.clusters[0].connect_timeout;
  }), []);
  expectOne(errorsAfter((b) => (b.static_resources.clusters[0].connectTimeout = '2s')), 'static_resources.clusters[0].connectTimeout', /given twice/);
});

test('PGV rules: required fields, lengths, bounds', () => {
  expectOne(errorsAfter((b) => (hcmOf(b).stat_prefix = '')), `${hcmPath}.stat_prefix`, /at least 1 characters/);
  expectOne(errorsAfter((b) => delete hcmOf(b).stat_prefix), `${hcmPath}.stat_prefix`, /at least 1 characters/);
  expectOne(errorsAfter((b) => (b.admin.address.socket_address.port_value = 70000)), 'admin.address.socket_address.port_value', /at most 65535/);
  expectOne(errorsAfter((b) => delete b.static_resources.listeners[0].address.socket_address.port_value),
    'static_resources.listeners[0].address.socket_address', /one of port_value, named_port is required/);
  expectOne(errorsAfter((b) => (hcmOf(b).route_config.virtual_hosts[0].domains = [])), `${hcmPath}.route_config.virtual_hosts[0].domains`, /at least 1 items/);
  expectOne(errorsAfter((b) => delete hcmOf(b).route_config.virtual_hosts[0].routes[0].route.cluster),
    `${hcmPath}.route_config.virtual_hosts[0].routes[0].route`, /one of cluster, cluster_header, .* is required/);
});

test('PGV rules: patterns, header syntax in list items, constants, excluded enum values', () => {
  expectOne(errorsAfter((b) => (hcmOf(b).route_config.virtual_hosts[0].routes[0].match = { path_separated_prefix: '/api/' })),
    `${hcmPath}.route_config.virtual_hosts[0].routes[0].match.path_separated_prefix`, /must match/);
  expectOne(errorsAfter((b) => (hcmOf(b).route_config.request_headers_to_remove = ['x-ok', 'x-bad\r\nx-injected'])),
    `${hcmPath}.route_config.request_headers_to_remove[1]`, /not a valid http header name/);
  expectOne(errorsAfter((b) => (b.stats_flush_on_admin = false)), 'stats_flush_on_admin', /must be true/);
  const tls = (sanType: string) => errorsAfter((b) => (b.static_resources.listeners[0].filter_chains[0].transport_socket = {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
      common_tls_context: { validation_context: { match_typed_subject_alt_names: [{ san_type: sanType, matcher: { prefix: 'spiffe://td/' } }] } },
    },
  }));
  assert.equal(tls('URI'), []);
  expectOne(tls('SAN_TYPE_UNSPECIFIED'), 'static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.validation_context.match_typed_subject_alt_names[0].san_type', /must not be SAN_TYPE_UNSPECIFIED/);
});

test('routes and gRPC services must name a defined cluster', () => {
  expectOne(errorsAfter((b) => (hcmOf(b).route_config.virtual_hosts[0].routes[0].route.cluster = 'ap')),
    `${hcmPath}.route_config.virtual_hosts[0].routes[0].route.cluster`, /cluster 'ap' is not defined/);
});

test('Envoy\'s construction checks: router last and only last, unique names and domains', () => {
  const misordered = errorsAfter((b) => hcmOf(b).http_filters.push({ name: 'envoy.filters.http.cors', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors' } }));
  assert.equal(misordered.map((i) => i.path), [`${hcmPath}.http_filters[0]`, `${hcmPath}.http_filters[1]`]);
  assert.match(misordered[0]!.message, /terminal filter 'envoy.filters.http.router' must be the last/);
  assert.match(misordered[1]!.message, /non-terminal filter 'envoy.filters.http.cors' is the last/);
  const issues = errorsAfter((b) => (hcmOf(b).http_filters = [{ name: 'policy', config_discovery: {
    config_source: { ads: {} }, type_urls: ['type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm'] } }]));
  expectOne(issues, `${hcmPath}.http_filters[0]`, /non-terminal filter 'policy' is the last/);
  expectOne(errorsAfter((b) => b.static_resources.clusters.push({ ...b.static_resources.clusters[0] })), 'static_resources.clusters[1]', /duplicate cluster name 'app'/);
  expectOne(errorsAfter((b) => b.static_resources.listeners.push({ ...b.static_resources.listeners[0], address: { socket_address: { address: '::', port_value: 1 } } })),
    'static_resources.listeners[1]', /duplicate listener name 'inbound'/);
  expectOne(errorsAfter((b) => hcmOf(b).route_config.virtual_hosts.push({ name: 'other', domains: ['a', '*'], routes: [] })),
    `${hcmPath}.route_config.virtual_hosts[1].domains[1]`, /domain '\*' already belongs to virtual_hosts\[0\]/);
});

test('deprecated fields are reported as warnings, not errors', () => {
  const b = bootstrap();
  b.static_resources.clusters[0].http2_protocol_options = {};
  const issues = validateEnvoyConfig(b);
  assert.is(errorsOf(issues).length, 0);
  assert.equal(issues.map((i) => [i.severity, i.path]), [['warning', 'static_resources.clusters[0].http2_protocol_options']]);
});

test('a document that is not an object, and other message types', () => {
  expectOne(errorsOf(validateEnvoyConfig(['x'])), '', /expected an object \(envoy\.config\.bootstrap\.v3\.Bootstrap\)/);
  assert.equal(validateEnvoyConfig({ name: 'c', connect_timeout: '0.25s', type: 'STATIC' }, 'envoy.config.cluster.v3.Cluster'), []);
});

test.run();
