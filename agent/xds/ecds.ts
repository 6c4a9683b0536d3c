import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { status, type ServerDuplexStream, type ServerUnaryCall, type sendUnaryData, type ServiceDefinition } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { loadGrpcPackage, loadProtoRoot, typeUrl } from '../../envoy/protos.ts';
import type { XdsService } from './server.ts';
import { readManifest, ManifestError } from '../../envoy/manifest.ts';
import { policyResourceName, wasmFilterConfig, WASM_TYPE } from '../../envoy/bootstrap.ts';
import { errorsOf, formatIssues, validateEnvoyConfig } from '../../envoy/validate.ts';
import { writeFileAtomic } from '../../platform/files.ts';

/**
 * Extension Config Discovery (state of the world) for the policy filter: each compiled
 * policy becomes a `TypedExtensionConfig` named `palisade.policy.<name>` holding an
 * `envoy.extensions.filters.http.wasm.v3.Wasm`. Envoy's local AsyncDataSource has no sha256
 * field (only `remote` has one), so the agent pins the code by content instead: it checks
 * the .wasm against the manifest's sha256 and serves an immutable copy named after that
 * digest (`<codeDir>/<name>.<sha256>.wasm`, written by rename). The digest is also the
 * resource's version. A NACK leaves Envoy on its previous config; the agent reverts the
 * resource to the last acknowledged version too (so a reconnecting Envoy is not handed the
 * rejected one) and reports it. Pinned copies no one can load any more are deleted after
 * each ACK or NACK (see prune), so a long-lived agent does not keep every build on disk.
 */
export const TYPED_EXTENSION_CONFIG_TYPE = typeUrl('envoy.config.core.v3.TypedExtensionConfig');

export interface PublishedPolicy {
  resource: string;
  /** sha256 of the wasm plus a digest of the plugin configuration. */
  version: string;
  wasmPath: string;
  sha256: string;
  configuration: string;
}

export interface NackReport {
  resource: string[];
  rejectedVersion: string;
  keptVersion: string;
  message: string;
  node?: string;
}

export interface EcdsHooks {
  onPublish?(policy: PublishedPolicy): void;
  onAck?(version: string, resources: string[], node?: string): void;
  onNack?(report: NackReport): void;
  /** A watched manifest could not be published; the previous policy stays. */
  onError?(error: Error, manifestPath: string): void;
}

export interface EcdsOptions extends EcdsHooks {
  /** Where content-addressed copies of published filters go (default: `<manifest dir>/ecds`). */
  codeDir?: string;
  log?: Pick<Logger, 'info' | 'warn'>;
}

export interface PublishOptions {
  /**
   * Plugin configuration handed to the filter, e.g. `{ "mode": "dry-run" }`; by default the
   * one this policy is served with now (so a rebuild keeps a mode override), else `{}`.
   */
  configuration?: Record<string, unknown>;
}

/** One Envoy's subscription: what it asked for and what we last sent it. */
interface Stream {
  call: ServerDuplexStream<any, any>;
  node?: string;
  /** Empty: all resources (wildcard). */
  names: string[];
  nonce?: string;
  sent?: { version: string; resources: string[]; paths: string[] };
  /** The pinned files of the version this Envoy last acknowledged (what it runs). */
  running: string[];
}

export class EcdsServer {
  readonly service: XdsService;
  readonly stats = { pushes: 0, acks: 0, nacks: 0 };
  private readonly current = new Map<string, PublishedPolicy>();
  private readonly acked = new Map<string, PublishedPolicy>();
  private readonly streams = new Set<Stream>();
  private readonly watchers: FSWatcher[] = [];
  /** Every content-addressed copy this server wrote or served, until pruned. */
  private readonly pinned = new Set<string>();
  private nonces = 0;

  constructor(private readonly options: EcdsOptions = {}) {
    const pkg = loadGrpcPackage(['envoy/service/extension/v3/config_discovery.proto']) as any;
    const definition: ServiceDefinition = pkg.envoy.service.extension.v3.ExtensionConfigDiscoveryService.service;
    this.service = {
      definition,
      implementation: {
        StreamExtensionConfigs: (call: ServerDuplexStream<any, any>) => this.stream(call),
        FetchExtensionConfigs: (call: ServerUnaryCall<any, any>, done: sendUnaryData<any>) => this.fetch(call.request, done),
      },
    };
  }

  /**
   * Verifies and publishes a compiled policy, then pushes it to every stream that wants it.
   * The filter's vm_id stays `palisade.policy.<name>` across versions, so the replay cache
   * the filter keeps in proxy-wasm shared data (scoped by vm_id in Envoy) survives updates.
   */
  publish(manifestPath: string, opts: PublishOptions = {}): PublishedPolicy {
    const artifact = readManifest(manifestPath);
    let bytes: Buffer;
    try {
      bytes = readFileSync(artifact.wasmPath);
    } catch (err) {
      throw new ManifestError(`${artifact.wasmPath}: cannot read compiled filter: ${(err as Error).message}`);
    }
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== artifact.sha256) throw new ManifestError(`${artifact.wasmPath}: sha256 ${sha256} does not match the manifest (${artifact.sha256})`);
    const codeDir = path.resolve(this.options.codeDir ?? path.join(path.dirname(manifestPath), 'ecds'));
    const wasmPath = pinCopy(codeDir, `${artifact.name}.${sha256}.wasm`, bytes);
    this.pinned.add(wasmPath);
    const resource = policyResourceName(artifact.name);
    const served = this.current.get(resource);
    const configuration = opts.configuration ? JSON.stringify(opts.configuration) : served?.configuration ?? '{}';
    const version = `${sha256.slice(0, 16)}.${createHash('sha256').update(configuration).digest('hex').slice(0, 8)}`;
    if (served?.version === version) return served; // a touched manifest is not a new policy
    const policy: PublishedPolicy = { resource, version, wasmPath, sha256, configuration };
    const issues = errorsOf(validateEnvoyConfig(wasmFilterConfig(policy.resource, wasmPath, configuration), WASM_TYPE));
    if (issues.length) throw new ManifestError(`policy filter config does not validate against Envoy's protos:\n${formatIssues(issues)}`);
    this.current.set(policy.resource, policy);
    this.options.log?.info({ resource: policy.resource, version, wasm: wasmPath }, 'ecds: policy published');
    this.options.onPublish?.(policy);
    for (const s of this.streams) if (wants(s, policy.resource)) this.send(s);
    return policy;
  }

  /** Republishes whenever the manifest is replaced (compilers write by rename, so the directory is watched). */
  watch(manifestPath: string, opts: PublishOptions = {}): void {
    const dir = path.dirname(path.resolve(manifestPath));
    const base = path.basename(manifestPath);
    let timer: NodeJS.Timeout | undefined;
    const watcher = watch(dir, (_event, file) => {
      if (file !== base) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (!existsSync(manifestPath)) return;
        try {
          this.publish(manifestPath, opts);
        } catch (err) {
          this.options.log?.warn({ manifest: manifestPath, err: (err as Error).message }, 'ecds: new policy not published, previous one kept');
          this.options.onError?.(err as Error, manifestPath);
        }
      }, 100);
    });
    watcher.on('close', () => clearTimeout(timer));
    this.watchers.push(watcher);
  }

  /** The version currently served for a resource. */
  published(resource: string): PublishedPolicy | undefined {
    return this.current.get(resource);
  }

  close(): void {
    for (const w of this.watchers.splice(0)) w.close();
    for (const s of this.streams) s.call.end();
    this.streams.clear();
  }

  private stream(call: ServerDuplexStream<any, any>): void {
    const s: Stream = { call, names: [], running: [] };
    this.streams.add(s);
    const forget = () => this.streams.delete(s);
    call.on('data', (request) => this.request(s, request));
    call.on('end', () => {
      forget();
      call.end();
    });
    call.on('error', forget);
    call.on('cancelled', forget);
  }

  /** ACK, NACK or (re)subscription, told apart by nonce and error_detail as the xDS protocol says. */
  private request(s: Stream, req: any): void {
    if (req.type_url && req.type_url !== TYPED_EXTENSION_CONFIG_TYPE) {
      s.call.emit('error', { code: status.INVALID_ARGUMENT, details: `type_url must be ${TYPED_EXTENSION_CONFIG_TYPE}` });
      return;
    }
    s.node ??= req.node?.id || undefined;
    const nonce: string = req.response_nonce ?? '';
    if (nonce && nonce !== s.nonce) return; // answers a response we have since superseded
    const names: string[] = req.resource_names ?? [];
    const resubscribed = names.join('\0') !== s.names.join('\0');
    s.names = names;
    if (nonce && s.sent) {
      if (req.error_detail) this.nack(s, req);
      else this.ack(s);
      if (!resubscribed) return;
    }
    this.send(s);
  }

  private ack(s: Stream): void {
    const sent = s.sent!;
    this.stats.acks++;
    for (const name of sent.resources) {
      const policy = this.current.get(name);
      if (policy && policyVersionIn(sent.version, policy)) this.acked.set(name, policy);
    }
    s.running = sent.paths;
    this.prune();
    this.options.onAck?.(sent.version, sent.resources, s.node);
  }

  /**
   * Deletes pinned copies nobody can still load: a copy stays while it is served (current
   * or last acknowledged), in flight to an Envoy that has not answered yet, or what a
   * connected Envoy last acknowledged. Envoy reads the file when it applies the config.
   */
  private prune(): void {
    const keep = new Set<string>();
    for (const p of [...this.current.values(), ...this.acked.values()]) keep.add(p.wasmPath);
    for (const s of this.streams) for (const file of [...(s.sent?.paths ?? []), ...s.running]) keep.add(file);
    for (const file of this.pinned) {
      if (keep.has(file)) continue;
      rmSync(file, { force: true });
      this.pinned.delete(file);
      this.options.log?.info({ wasm: file }, 'ecds: unused policy copy deleted');
    }
  }

  private nack(s: Stream, req: any): void {
    const sent = s.sent!;
    this.stats.nacks++;
    for (const name of sent.resources) {
      const previous = this.acked.get(name);
      if (previous) this.current.set(name, previous);
      else this.current.delete(name);
    }
    const report: NackReport = {
      resource: sent.resources,
      rejectedVersion: sent.version,
      keptVersion: req.version_info ?? '',
      message: req.error_detail?.message ?? '',
      ...(s.node ? { node: s.node } : {}),
    };
    this.options.log?.warn(report, 'ecds: Envoy rejected the policy filter; previous version kept');
    s.sent = { ...sent, paths: [] }; // the rejected copy is no longer in flight
    this.prune();
    this.options.onNack?.(report);
  }

  /** Sends everything the stream subscribes to, unless there is nothing yet. */
  private send(s: Stream): void {
    const response = this.response(s.names);
    if (!response) return;
    s.nonce = response.nonce;
    s.sent = { version: response.version_info, resources: response.names, paths: response.paths };
    this.stats.pushes++;
    const { names: _, paths: __, ...wire } = response;
    s.call.write(wire);
  }

  private fetch(req: any, done: sendUnaryData<any>): void {
    const response = this.response(req.resource_names ?? []);
    if (!response) return done({ code: status.UNAVAILABLE, details: 'no policy published yet' });
    const { names: _, paths: __, ...wire } = response;
    done(null, wire);
  }

  private response(names: string[]) {
    const policies = [...this.current.values()].filter((p) => names.length === 0 || names.includes(p.resource))
      .sort((a, b) => a.resource.localeCompare(b.resource));
    if (policies.length === 0) return undefined;
    return {
      version_info: policies.map((p) => p.version).join('+'),
      resources: policies.map((p) => ({ type_url: TYPED_EXTENSION_CONFIG_TYPE, value: encodeExtensionConfig(p) })),
      type_url: TYPED_EXTENSION_CONFIG_TYPE,
      nonce: String(++this.nonces),
      names: policies.map((p) => p.resource),
      paths: policies.map((p) => p.wasmPath),
    };
  }
}

function wants(s: Stream, resource: string): boolean {
  return s.names.length === 0 || s.names.includes(resource);
}

function policyVersionIn(version: string, policy: PublishedPolicy): boolean {
  return version.split('+').includes(policy.version);
}

/** Writes `name` into `dir` once (write, then rename): a path Envoy reads is never half-written. */
function pinCopy(dir: string, name: string, bytes: Buffer): string {
  const target = path.join(dir, name);
  if (!existsSync(target)) writeFileAtomic(target, bytes);
  return target;
}

function encodeExtensionConfig(p: PublishedPolicy): Buffer {
  const root = loadProtoRoot(['envoy/extensions/filters/http/wasm/v3/wasm.proto', 'envoy/config/core/v3/extension.proto']);
  const any = (type: string, message: object) => {
    const t = root.lookupType(type);
    return { type_url: typeUrl(type), value: t.encode(t.fromObject(message)).finish() };
  };
  const { config } = wasmFilterConfig(p.resource, p.wasmPath, p.configuration) as { config: Record<string, unknown> };
  const wasm = any(WASM_TYPE, {
    config: { ...config, configuration: any('google.protobuf.StringValue', { value: p.configuration }) },
  });
  const typed = root.lookupType('envoy.config.core.v3.TypedExtensionConfig');
  return Buffer.from(typed.encode(typed.fromObject({ name: p.resource, typed_config: wasm })).finish());
}
