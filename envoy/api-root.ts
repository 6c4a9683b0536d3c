import fs from 'node:fs';
import path from 'node:path';
import type protobuf from 'protobufjs';
import { loadProtoRoot, PROTO_INCLUDE_DIRS } from './protos.ts';

/**
 * Every loadable v3 message of Envoy's API (`envoy/**\/v3*` as shipped in
 * `@grpc/grpc-js-xds/deps`), in one protobufjs Root with snake_case field names, so that any
 * `typed_config` an Envoy config names can be resolved and checked. Files importing protos
 * the package does not ship (opencensus, prometheus…) are left out. Loading takes ~0.6 s,
 * once per process.
 */
let files: string[] | undefined;

export function envoyRoot(): protobuf.Root {
  files ??= envoyApiFiles();
  return loadProtoRoot(files);
}

function envoyApiFiles(): string[] {
  const apiDir = PROTO_INCLUDE_DIRS.find((d) => path.basename(d) === 'envoy-api')!;
  const found = protoFiles(path.join(apiDir, 'envoy'))
    .map((f) => path.relative(apiDir, f).split(path.sep).join('/'))
    .filter((f) => /\/v3(alpha)?\//.test(f) && importsResolve(f, new Set()));
  // TypedStruct: the untyped form of a typed_config some extensions are configured with.
  return [...found, 'xds/type/v3/typed_struct.proto', 'udpa/type/v1/typed_struct.proto'];
}

function protoFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? protoFiles(path.join(dir, e.name)) : e.name.endsWith('.proto') ? [path.join(dir, e.name)] : []);
}

function locate(file: string): string | undefined {
  return PROTO_INCLUDE_DIRS.map((d) => path.join(d, file)).find((p) => fs.existsSync(p));
}

const importable = new Map<string, boolean>();

/** Whether a file and everything it imports exists; protobufjs provides google/protobuf itself. */
function importsResolve(file: string, visiting: Set<string>): boolean {
  const known = importable.get(file);
  if (known !== undefined) return known;
  if (file.startsWith('google/protobuf/') || visiting.has(file)) return true;
  visiting.add(file);
  const full = locate(file);
  const ok = !!full && [...fs.readFileSync(full, 'utf8').matchAll(/^import\s+(?:public\s+|weak\s+)?"([^"]+)";/gm)]
    .every((m) => importsResolve(m[1]!, visiting));
  importable.set(file, ok);
  return ok;
}
