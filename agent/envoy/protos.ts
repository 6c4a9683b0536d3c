import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import protobuf from 'protobufjs';

/**
 * Envoy's own API definitions, as shipped in `@grpc/grpc-js-xds/deps`, loaded once into a
 * protobufjs Root with every v3 message, so that any `typed_config` an Envoy config names
 * can be resolved and checked. Field names keep Envoy's snake_case (`keepCase`).
 */
const require = createRequire(import.meta.url);
export const PROTO_DEPS = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
export const PROTO_INCLUDE_DIRS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => path.join(PROTO_DEPS, d));

let cached: protobuf.Root | undefined;

/** The Root holding every loadable `envoy/**\/v3*` definition (a few import protos the package does not ship and are skipped). */
export function envoyRoot(): protobuf.Root {
  if (cached) return cached;
  // protobufjs bundles descriptor.proto only as JSON; PGV's validate.proto imports it.
  const descriptor = require('protobufjs/google/protobuf/descriptor.json');
  protobuf.common('descriptor', descriptor.nested.google.nested.protobuf.nested);
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => locate(target) ?? target;
  const apiDir = path.join(PROTO_DEPS, 'envoy-api');
  const files = protoFiles(path.join(apiDir, 'envoy'))
    .map((f) => path.relative(apiDir, f))
    .filter((f) => /\/v3(alpha)?\//.test(f) && importsResolve(f, new Set()));
  // TypedStruct: the untyped form of a typed_config some extensions are configured with.
  root.loadSync([...files, 'xds/type/v3/typed_struct.proto', 'udpa/type/v1/typed_struct.proto'], { keepCase: true });
  root.resolveAll();
  cached = root;
  return root;
}

function locate(target: string): string | undefined {
  if (path.isAbsolute(target)) return target;
  if (target.startsWith('google/protobuf/')) return undefined; // protobufjs' bundled copies
  for (const dir of PROTO_INCLUDE_DIRS) {
    const full = path.join(dir, target);
    if (fs.existsSync(full)) return full;
  }
  return undefined;
}

function protoFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? protoFiles(path.join(dir, e.name)) : e.name.endsWith('.proto') ? [path.join(dir, e.name)] : []);
}

const importable = new Map<string, boolean>();

/** Whether a file and everything it imports exists (some imports, e.g. opencensus, are not shipped). */
function importsResolve(file: string, visiting: Set<string>): boolean {
  const known = importable.get(file);
  if (known !== undefined) return known;
  if (file.startsWith('google/protobuf/') || visiting.has(file)) return true;
  const full = locate(file);
  if (!full) return remember(file, false);
  visiting.add(file);
  const imports = [...fs.readFileSync(full, 'utf8').matchAll(/^import\s+(?:public\s+|weak\s+)?"([^"]+)";/gm)].map((m) => m[1]!);
  return remember(file, imports.every((i) => importsResolve(i, visiting)));
}

function remember(file: string, ok: boolean): boolean {
  importable.set(file, ok);
  return ok;
}
