import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import protobuf from 'protobufjs';
import * as protoLoader from '@grpc/proto-loader';
import type { GrpcObject, ServiceClientConstructor } from '@grpc/grpc-js';
import { loadPackageDefinition } from '@grpc/grpc-js';

/**
 * Envoy's own API protos, as shipped by @grpc/grpc-js-xds. Everything that speaks to Envoy
 * (SDS, ECDS, the bootstrap validator) resolves `.proto` imports through these directories,
 * so a message that Envoy would not accept cannot be encoded by accident.
 */
const require = createRequire(import.meta.url);
const deps = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');

export const PROTO_INCLUDE_DIRS: readonly string[] = [
  path.join(deps, 'envoy-api'),
  path.join(deps, 'xds'),
  path.join(deps, 'googleapis'),
  path.join(deps, 'protoc-gen-validate'),
  // google/protobuf/*.proto (any, struct, duration, wrappers, descriptor …)
  path.dirname(require.resolve('protobufjs/package.json')),
];

/** Type URL of an Envoy message, as it appears in `google.protobuf.Any.type_url`. */
export function typeUrl(fullName: string): string {
  return `type.googleapis.com/${fullName}`;
}

/** Options shared by every gRPC loader: field names as in the .proto (snake_case), bytes as Buffers. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
  includeDirs: [...PROTO_INCLUDE_DIRS],
};

/**
 * gRPC package (services and clients) for the given files, e.g.
 * `loadGrpcPackage(['envoy/service/secret/v3/sds.proto'])`. `Any` payloads stay
 * `{ type_url, value: Buffer }`; encode them with a Root from `loadProtoRoot`.
 */
export function loadGrpcPackage(files: string[]): GrpcObject {
  return loadPackageDefinition(protoLoader.loadSync(files, LOADER_OPTIONS));
}

/** A service's client constructor (also its server definition, `.service`) by full name. */
export function grpcService(file: string, fullName: string): ServiceClientConstructor {
  let node: unknown = loadGrpcPackage([file]);
  for (const part of fullName.split('.')) node = (node as GrpcObject)?.[part];
  if (typeof node !== 'function') throw new Error(`${fullName} is not a service in ${file}`);
  return node as ServiceClientConstructor;
}

const roots = new Map<string, protobuf.Root>();

/**
 * protobufjs Root with the given files (and everything they import) resolved from Envoy's
 * include directories; cached per file set since parsing Envoy's tree takes a while.
 */
export function loadProtoRoot(files: string[]): protobuf.Root {
  const key = [...files].sort().join('\0');
  let root = roots.get(key);
  if (!root) {
    root = new protobuf.Root();
    root.resolvePath = (_origin, target) => resolveProto(target);
    root.loadSync(files, { keepCase: true });
    root.resolveAll();
    roots.set(key, root);
  }
  return root;
}

function resolveProto(target: string): string {
  if (path.isAbsolute(target)) return target;
  for (const dir of PROTO_INCLUDE_DIRS) {
    const candidate = path.join(dir, target);
    if (existsSync(candidate)) return candidate;
  }
  return target;
}
