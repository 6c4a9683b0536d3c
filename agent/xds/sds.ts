import { EventEmitter } from 'node:events';
import { status as GrpcStatus, type ServiceClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import { Counter, Gauge, type Registry } from '../metrics.ts';
import { grpcService, loadProtoRoot, typeUrl } from '../../envoy/protos.ts';
import type { XdsService } from './server.ts';
import { selectByName, sotwHandlers, type AnyMessage, type SotwSource } from './sotw.ts';

export const SDS_PROTO = 'envoy/service/secret/v3/sds.proto';
export const SECRET_TYPE = 'envoy.extensions.transport_sockets.tls.v3.Secret';
export const SECRET_TYPE_URL = typeUrl(SECRET_TYPE);
/** Resource names as SPIRE's agent uses them, so Envoy configs written for SPIRE work unchanged. */
export const DEFAULT_SVID = 'default';
export const ROOT_CA = 'ROOTCA';

/** The identity the agent serves: its current SVID and trust bundle, and change events. */
export interface SecretSource {
  svid(): { chainPem: string; keyPem: string; serial: string };
  trustBundle(): string[];
  on(event: 'rotated', listener: () => void): unknown;
  off(event: 'rotated', listener: () => void): unknown;
}

/** The SecretDiscoveryService client/server definition from Envoy's protos. */
export function sdsServiceConstructor(): ServiceClientConstructor {
  return grpcService(SDS_PROTO, 'envoy.service.secret.v3.SecretDiscoveryService');
}

/** Encodes the SVID (`default`, tls_certificate) and bundle (`ROOTCA`, validation_context) as Envoy Secrets. */
export function encodeSecrets(source: SecretSource): Map<string, AnyMessage> {
  const Secret = loadProtoRoot([SDS_PROTO, 'envoy/extensions/transport_sockets/tls/v3/secret.proto']).lookupType(SECRET_TYPE);
  const svid = source.svid();
  const secrets = [
    {
      name: DEFAULT_SVID,
      tls_certificate: {
        certificate_chain: { inline_bytes: Buffer.from(svid.chainPem) },
        private_key: { inline_bytes: Buffer.from(svid.keyPem) },
      },
    },
    { name: ROOT_CA, validation_context: { trusted_ca: { inline_bytes: Buffer.from(source.trustBundle().join('')) } } },
  ];
  return new Map(
    secrets.map((secret) => [secret.name, { type_url: SECRET_TYPE_URL, value: Buffer.from(Secret.encode(Secret.fromObject(secret)).finish()) }]),
  );
}

/**
 * SDS (StreamSecrets, FetchSecrets) for Envoy over the agent's identity; every rotation is
 * pushed to every open stream. DeltaSecrets is answered UNIMPLEMENTED, as Envoy's
 * state-of-the-world SDS config never uses it. Metrics go to `registry` when given.
 */
export function createSdsService(source: SecretSource, options: { registry?: Registry; log?: (msg: string) => void } = {}): XdsService {
  const changes = new EventEmitter();
  // The SVID serial is the version: unique per rotation, and the bundle is fixed per agent.
  let cache: { version: string; resources: Map<string, AnyMessage> } | undefined;
  const sotw: SotwSource = {
    typeUrl: SECRET_TYPE_URL,
    snapshot(names) {
      const serial = source.svid().serial;
      if (cache?.version !== serial) cache = { version: serial, resources: encodeSecrets(source) };
      const wanted = selectByName(cache.resources, names);
      return wanted.length ? { version: serial, resources: wanted.map(([, secret]) => secret) } : undefined;
    },
    subscribe(listener) {
      changes.on('change', listener);
      return () => changes.off('change', listener);
    },
  };
  const rotated = () => changes.emit('change');
  source.on('rotated', rotated);
  changes.setMaxListeners(0);

  const registers = options.registry ? [options.registry] : [];
  const streams = new Gauge({ name: 'palisade_agent_sds_streams', help: 'Open SDS streams', registers });
  const nacks = new Counter({ name: 'palisade_agent_sds_nacks_total', help: 'SDS responses rejected by Envoy', registers });
  const handlers = sotwHandlers(sotw, {
    onStreamCount: (delta) => streams.inc(delta),
    onNack: (stream, response, keptVersion, message) => {
      nacks.inc();
      options.log?.(`SDS NACK from ${stream.node ?? 'unknown'} for version ${keptVersion}: ${message}`);
    },
  });
  const definition: ServiceDefinition = sdsServiceConstructor().service;
  return {
    definition,
    implementation: {
      StreamSecrets: handlers.stream,
      FetchSecrets: handlers.fetch,
      DeltaSecrets: (call: { emit(event: 'error', err: object): void }) =>
        call.emit('error', { code: GrpcStatus.UNIMPLEMENTED, details: 'use StreamSecrets (state of the world)' }),
    },
  };
}
