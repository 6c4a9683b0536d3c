import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { generateBootstrap } from '../../envoy/bootstrap.ts';
import { bootstrapFor } from '../../envoy/edge.ts';
import { bootstrapOptions, OptionError, type BootstrapInput } from '../../envoy/options.ts';
import { InvalidEnvoyConfigError, renderBootstrap } from '../../envoy/render.ts';
import { validateEnvoyConfig } from '../../envoy/validate.ts';

const run = promisify(execFile);
const dir = mkdtempSync(path.join(tmpdir(), 'palisade-envoy-'));
const manifest = path.join(dir, 'card-service.manifest.json');
writeFileSync(manifest, JSON.stringify({ name: 'card-service', service: 'spiffe://bank.example/ns/payments/sa/card-service', wasm: { sha256: 'a'.repeat(64) } }));
const routes = path.join(dir, 'routes.json');
writeFileSync(routes, JSON.stringify({
  ledger: { url: 'https://10.0.0.7:15006', spiffeId: 'spiffe://bank.example/ns/payments/sa/ledger' },
  card: { url: 'https://card.payments:15006', spiffeId: 'spiffe://bank.example/ns/payments/sa/card-service' },
}));
const edgeRoutes = path.join(dir, 'edge-routes.json');
writeFileSync(edgeRoutes, JSON.stringify({
  '/cards': { url: 'https://card.payments:15006', spiffeId: 'spiffe://bank.example/ns/payments/sa/card-service' },
  'admin.bank.example/': { url: 'https://10.0.0.9:15006', spiffeId: 'spiffe://bank.example/ns/ops/sa/admin' },
}));
const identity = { identityIssuer: 'https://login.bank.example', identityJwksUri: 'https://login.bank.example/jwks.json', identityAudience: ['card-service', 'bank'] };

/** The option combinations docs/envoy.md documents; each must give a config Envoy accepts. */
const COMBINATIONS: Record<string, BootstrapInput> = {
  'defaults only': {},
  'policy manifest': { policy: manifest },
  'identity context': { policy: manifest, ...identity },
  'outbound routes': { policy: manifest, routes },
  'everything, custom addresses': {
    policy: manifest, ...identity, routes, inboundAddress: '::', inboundPort: '16006', appAddress: '127.0.0.2', appPort: '3000',
    outboundPort: '16001', adminPort: '19901', sdsSocket: '/var/run/palisade/card.sock', caJwksUrl: 'https://ca.bank.example/v1/jwks',
    signerUrl: 'http://127.0.0.1:16090/v1/fingerprint', egressFilter: '/opt/palisade/egress.wasm', stripHeader: ['X-Palisade-Caller', 'x-internal-user'],
  },
  'explicit identity, no manifest': { serviceName: 'ledger', spiffeId: 'spiffe://bank.example/ns/payments/sa/ledger' },
  'audit, with the identity context': { policy: manifest, ...identity, audit: true },
  'the edge in Envoy mode': { serviceName: 'edge', spiffeId: 'spiffe://bank.example/ns/web/sa/edge', edge: true, edgeRoutes, edgeAddress: '0.0.0.0', edgePort: '443' },
};

const listener = (c: any, name: string) => c.static_resources.listeners.find((l: any) => l.name === name);
const hcm = (l: any) => l.filter_chains[0].filters[0].typed_config;
const cluster = (c: any, name: string) => c.static_resources.clusters.find((x: any) => x.name === name);

test.after(() => rmSync(dir, { recursive: true, force: true }));

for (const [name, input] of Object.entries(COMBINATIONS)) {
  test(`${name}: validates without a single issue; YAML and JSON parse back identically`, () => {
    const config = bootstrapFor(bootstrapOptions(input));
    assert.equal(validateEnvoyConfig(config), []);
    const fromJson = JSON.parse(renderBootstrap(config, 'json'));
    const fromYaml = YAML.parse(renderBootstrap(config, 'yaml'));
    assert.equal(fromJson, config);
    assert.equal(fromYaml, fromJson);
  });
}

test('inbound: client certificates required, peers from our trust domain, SVID and bundle from SDS', () => {
  const c: any = generateBootstrap(bootstrapOptions({ policy: manifest }));
  const tls = listener(c, 'inbound').filter_chains[0].transport_socket.typed_config;
  assert.is(tls['@type'], 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext');
  assert.is(tls.require_client_certificate, true);
  const common = tls.common_tls_context;
  assert.is(common.tls_certificate_sds_secret_configs[0].name, 'default');
  assert.is(common.combined_validation_context.validation_context_sds_secret_config.name, 'ROOTCA');
  assert.equal(common.combined_validation_context.default_validation_context.match_typed_subject_alt_names,
    [{ san_type: 'URI', matcher: { prefix: 'spiffe://bank.example/' } }]);
  // The CA's JWKS endpoint chains to the same root as every SVID: it is pinned by host too.
  assert.equal(cluster(c, 'palisade_ca').transport_socket.typed_config.common_tls_context.combined_validation_context
    .default_validation_context.match_typed_subject_alt_names, [{ san_type: 'IP_ADDRESS', matcher: { exact: '127.0.0.1' } }]);
  const sds = cluster(c, 'sds-grpc');
  assert.is(sds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path, '/run/palisade/agent.sock');
  assert.ok(sds.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config.http2_protocol_options);
});

test('inbound HTTP: safe paths, spoofable headers removed, trace context, jwt_authn → ECDS policy filter → router', () => {
  const c: any = generateBootstrap(bootstrapOptions({ policy: manifest, ...identity }));
  const h = hcm(listener(c, 'inbound'));
  assert.is(h.normalize_path, true);
  assert.is(h.merge_slashes, true);
  assert.is(h.path_with_escaped_slashes_action, 'REJECT_REQUEST');
  assert.equal(h.early_header_mutation_extensions[0].typed_config.mutations.map((m: any) => m.remove), ['x-palisade-caller', 'x-palisade-user', 'x-palisade-claims']);
  assert.is(h.tracing.provider.name, 'envoy.tracers.opentelemetry');
  assert.equal(h.http_filters.map((f: any) => f.name), ['envoy.filters.http.jwt_authn', 'palisade.policy.card-service', 'envoy.filters.http.router']);

  const jwt = h.http_filters[0].typed_config;
  const fp = jwt.providers.fingerprint;
  assert.equal(fp.from_headers, [{ name: 'x-palisade-fingerprint' }]);
  assert.is(fp.payload_in_metadata, 'fingerprint');
  assert.is(fp.forward, false);
  assert.equal(fp.audiences, ['spiffe://bank.example/ns/payments/sa/card-service']);
  assert.is(fp.remote_jwks.http_uri.uri, 'https://127.0.0.1:8443/v1/jwks');
  const user = jwt.providers.user;
  assert.is(user.payload_in_metadata, 'user');
  assert.equal([user.issuer, user.audiences], ['https://login.bank.example', ['card-service', 'bank']]);
  // Fingerprint always required; identity context optional but never invalid.
  assert.equal(jwt.rules, [{ match: { prefix: '/' }, requires: { requires_all: { requirements: [
    { provider_name: 'fingerprint' },
    { requires_any: { requirements: [{ provider_name: 'user' }, { allow_missing: {} }] } },
  ] } } }]);

  const policy = h.http_filters[1];
  assert.equal(policy.config_discovery.type_urls, ['type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm']);
  assert.is(policy.config_discovery.config_source.api_config_source.grpc_services[0].envoy_grpc.cluster_name, 'sds-grpc');
  assert.not.ok('default_config' in policy.config_discovery, 'no fallback filter: without the policy, requests fail');
});

test('audit: every inbound request to the agent\'s access-log service with the decision, the caller\'s certificate, the token and the fingerprint', () => {
  const plain = hcm(listener(generateBootstrap(bootstrapOptions({ policy: manifest })), 'inbound'));
  assert.not.ok('access_log' in plain);
  assert.equal(plain.set_current_client_cert_details, { uri: true });

  const h = hcm(listener(generateBootstrap(bootstrapOptions({ policy: manifest, ...identity, audit: true })), 'inbound'));
  assert.equal(h.set_current_client_cert_details, { uri: true, cert: true });
  // The fingerprint is copied before jwt_authn verifies and removes it.
  assert.equal(h.http_filters.map((f: any) => f.name), ['envoy.filters.http.header_to_metadata', 'envoy.filters.http.jwt_authn', 'palisade.policy.card-service', 'envoy.filters.http.router']);
  assert.equal(h.http_filters[0].typed_config.request_rules, [{
    header: 'x-palisade-fingerprint', on_header_present: { metadata_namespace: 'palisade', key: 'fingerprint', type: 'STRING' }, remove: false,
  }]);
  assert.is(h.http_filters[1].typed_config.providers.fingerprint.forward, false);
  assert.equal(h.access_log.length, 1);
  const als = h.access_log[0];
  assert.is(als.name, 'envoy.access_loggers.http_grpc');
  assert.equal(als.typed_config.common_config, {
    log_name: 'palisade.audit',
    grpc_service: { envoy_grpc: { cluster_name: 'sds-grpc' } },
    transport_api_version: 'V3',
    filter_state_objects_to_log: ['wasm.palisade.decision'],
  });
  assert.equal(als.typed_config.additional_request_headers_to_log, ['x-forwarded-client-cert', 'authorization', 'traceparent']);
});

test('without identity options, only the fingerprint is required and no user provider exists', () => {
  const jwt = hcm(listener(generateBootstrap(bootstrapOptions({})), 'inbound')).http_filters[0].typed_config;
  assert.equal(Object.keys(jwt.providers), ['fingerprint']);
  assert.equal(jwt.rules[0].requires, { provider_name: 'fingerprint' });
});

test('outbound: loopback only, egress filter fail-closed, per-service mTLS pinned to the SPIFFE ID; admin on loopback', () => {
  const c: any = generateBootstrap(bootstrapOptions({ policy: manifest, routes }));
  const out = listener(c, 'outbound');
  assert.is(out.address.socket_address.address, '127.0.0.1');
  const h = hcm(out);
  assert.equal(h.route_config.virtual_hosts.map((v: any) => [v.domains, v.routes[0].route.cluster]), [[['card'], 'outbound_card'], [['ledger'], 'outbound_ledger']]);
  const egress = h.http_filters[0].typed_config.config;
  assert.is(egress.fail_open, false);
  assert.equal(JSON.parse(egress.configuration.value).targets, { ledger: 'spiffe://bank.example/ns/payments/sa/ledger', card: 'spiffe://bank.example/ns/payments/sa/card-service' });
  const ledger = cluster(c, 'outbound_ledger');
  assert.is(ledger.type, 'STATIC');
  const tls = ledger.transport_socket.typed_config.common_tls_context;
  assert.is(tls.tls_certificate_sds_secret_configs[0].name, 'default');
  assert.equal(tls.combined_validation_context.default_validation_context.match_typed_subject_alt_names,
    [{ san_type: 'URI', matcher: { exact: 'spiffe://bank.example/ns/payments/sa/ledger' } }]);
  assert.is(cluster(c, 'outbound_card').type, 'STRICT_DNS');
  assert.is(cluster(c, 'outbound_card').transport_socket.typed_config.sni, 'card.payments');
  assert.is(c.admin.address.socket_address.address, '127.0.0.1');
});

test('the manifest names the policy resource and the identity; options win over it', () => {
  const o = bootstrapOptions({ policy: manifest, serviceName: 'cards-eu' });
  assert.equal([o.serviceName, o.spiffeId, o.trustDomain, o.policyResource],
    ['cards-eu', 'spiffe://bank.example/ns/payments/sa/card-service', 'bank.example', 'palisade.policy.card-service']);
});

test('edge: client identity headers removed before any filter, the agent\'s ext_authz first and fail-closed, routes only by the name it answers', () => {
  const c: any = bootstrapFor(bootstrapOptions({ serviceName: 'edge', spiffeId: 'spiffe://bank.example/ns/web/sa/edge', edge: true, edgeRoutes }));
  assert.equal(c.static_resources.listeners.map((l: any) => l.name), ['edge']);
  const edge = listener(c, 'edge');
  assert.equal(edge.address.socket_address, { address: '127.0.0.1', port_value: 8443 });
  const tls = edge.filter_chains[0].transport_socket.typed_config;
  assert.is(tls.require_client_certificate, undefined);
  assert.is(tls.common_tls_context.tls_certificate_sds_secret_configs[0].name, 'default');
  const h = hcm(edge);
  // A client's own context, fingerprint or caller headers never reach ext_authz, the egress filter or the service.
  const removed = h.early_header_mutation_extensions[0].typed_config.mutations.map((m: any) => m.remove);
  for (const name of ['x-palisade-context', 'x-palisade-fingerprint', 'x-palisade-caller', 'x-palisade-user', 'x-palisade-claims', 'x-forwarded-client-cert']) assert.ok(removed.includes(name), name);
  assert.is(h.forward_client_cert_details, 'SANITIZE');
  assert.equal(h.http_filters.map((f: any) => f.name), ['envoy.filters.http.ext_authz', 'envoy.filters.http.wasm', 'envoy.filters.http.router']);
  const authz = h.http_filters[0].typed_config;
  assert.is(authz.failure_mode_allow, false);
  assert.is(authz.clear_route_cache, true);
  assert.is(authz.grpc_service.envoy_grpc.cluster_name, 'sds-grpc');
  assert.equal(authz.allowed_headers, { patterns: [{ exact: 'authorization' }] });
  // Routes exist only for the names the agent answers as :authority; the egress filter signs for the same targets.
  assert.equal(h.route_config.virtual_hosts.map((v: any) => [v.domains, v.routes[0].route.cluster]), [[['route-0'], 'edge_route-0'], [['route-1'], 'edge_route-1']]);
  assert.equal(JSON.parse(h.http_filters[1].typed_config.config.configuration.value).targets, {
    'route-0': 'spiffe://bank.example/ns/payments/sa/card-service', 'route-1': 'spiffe://bank.example/ns/ops/sa/admin',
  });
  assert.equal(cluster(c, 'edge_route-1').transport_socket.typed_config.common_tls_context.combined_validation_context
    .default_validation_context.match_typed_subject_alt_names, [{ san_type: 'URI', matcher: { exact: 'spiffe://bank.example/ns/ops/sa/admin' } }]);
  assert.throws(() => bootstrapOptions({ edge: true }), (e: Error) => e instanceof OptionError && /--edge needs --edge-routes/.test(e.message));
  assert.throws(() => bootstrapOptions({ edgeRoutes }), (e: Error) => e instanceof OptionError && /need --edge/.test(e.message));
});

test('bad options are refused with a message naming the option', () => {
  const refused = (input: BootstrapInput, message: RegExp) =>
    assert.throws(() => bootstrapOptions(input), (e: unknown) => e instanceof OptionError && message.test(e.message));
  refused({ inboundPort: '0' }, /--inbound-port/);
  refused({ appPort: 'http' }, /--app-port/);
  refused({ identityIssuer: 'https://login' }, /go together/);
  refused({ spiffeId: 'spiffe://a.example/x', trustDomain: 'b.example' }, /not in trust domain/);
  refused({ spiffeId: 'https://a.example/x' }, /not a SPIFFE ID/);
  refused({ caJwksUrl: 'http://ca:8443/v1/jwks' }, /--ca-jwks-url.*https/);
  refused({ signerUrl: 'http://10.0.0.1:15090/sign' }, /--signer-url.*127\.0\.0\.1/);
  refused({ sdsSocket: 'agent.sock' }, /absolute/);
  refused({ stripHeader: ['bad header'] }, /--strip-header/);
  refused({ trustDomain: 'other.example', routes }, /--routes: .*spiffeId must be a SPIFFE ID in other\.example/);
  refused({ policy: path.join(dir, 'missing.manifest.json') }, /cannot read policy manifest/);
});

test('an invalid config is never rendered', () => {
  const config: any = generateBootstrap(bootstrapOptions({}));
  config.static_resources.clusters[0].connect_timeout = '1 second';
  assert.throws(() => renderBootstrap(config, 'yaml'), (e: unknown) =>
    e instanceof InvalidEnvoyConfigError && e.issues.length === 1 && e.issues[0]!.path === 'static_resources.clusters[0].connect_timeout');
});

test('CLI: prints the same config as the library, bad options exit 2 without a stack trace; the example is current', async () => {
  // One test so the processes (each loading Envoy's protos) run side by side.
  const cli = path.resolve('bin/palisade.js');
  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(bad, 'admin:\n  address: { socket_address: { address: 127.0.0.1, port_value: 9901, ipv4_compat: "yes" } }\n');
  const fresh = path.join(dir, 'card-service.envoy.yaml');
  const [printed, failed, invalid]: any[] = await Promise.all([
    run(process.execPath, [cli, 'envoy', 'bootstrap', '--policy', manifest, '--format', 'json']),
    run(process.execPath, [cli, 'envoy', 'bootstrap', '--admin-port', '99999']).catch((e) => e),
    run(process.execPath, [cli, 'envoy', 'validate', bad]).catch((e) => e),
    run('sh', ['examples/envoy/regenerate.sh', '--out', fresh]),
  ]);
  assert.equal(JSON.parse(printed.stdout), generateBootstrap(bootstrapOptions({ policy: manifest })));
  assert.is(failed.code, 2);
  assert.is(failed.stderr, "palisade: --admin-port: '99999' is not a port number (1-65535)\n");
  assert.is(invalid.code, 1);
  assert.match(invalid.stderr, /bad\.yaml: admin\.address\.socket_address\.ipv4_compat: error: expected true or false/);
  // examples/envoy/card-service.envoy.yaml is exactly what regenerate.sh writes, and valid.
  assert.fixture(readFileSync(fresh, 'utf8'), readFileSync('examples/envoy/card-service.envoy.yaml', 'utf8'));
  assert.equal(validateEnvoyConfig(YAML.parse(readFileSync(fresh, 'utf8'))), []);
});

test.run();
