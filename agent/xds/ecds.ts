import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync, rmSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { ServiceDefinition } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { loadGrpcPackage, loadProtoRoot, typeUrl } from '../../envoy/protos.ts';
import type { XdsService } from './server.ts';
import { selectByName, sotwHandlers, type SotwSnapshot, type SotwStream } from './sotw.ts';
import { readManifest, ManifestError } from '../../envoy/manifest.ts';
import { policyResourceName, wasmFilterConfig, WASM_TYPE } from '../../envoy/bootstrap.ts';
import { errorsOf, formatIssues, validateEnvoyConfig } from '../../envoy/validate.ts';
import { writeFileAtomic } from '../../platform/files.ts';

/**
 * Extension Config Discovery for the policy filter, a source of the shared state-of-the-world
 * stream (sotw.ts, as SDS is): each compiled
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

/** What a subscription is sent: the policies it names, one version for all of them. */
interface PolicySnapshot extends SotwSnapshot {
  policies: PublishedPolicy[];
}

export class EcdsServer {
  readonly service: XdsService;
  readonly stats = { pushes: 0, acks: 0, nacks: 0 };
  private readonly current = new Map<string, PublishedPolicy>();
  private readonly acked = new Map<string, PublishedPolicy>();
  /** Emits `publish` with the resource names of every newly published policy. */
  private readonly changes = new EventEmitter().setMaxListeners(0);
  private readonly sotw;
  private readonly watchers: FSWatcher[] = [];
  /** Every content-addressed copy this server wrote or served, until pruned. */
  private readonly pinned = new Set<string>();

  constructor(private readonly options: EcdsOptions = {}) {
    this.sotw = sotwHandlers<PolicySnapshot>(
      {
        typeUrl: TYPED_EXTENSION_CONFIG_TYPE,
        snapshot: (names) => this.snapshot(names),
        subscribe: (listener) => {
          this.changes.on('publish', listener);
          return () => this.changes.off('publish', listener);
        },
      },
      {
        onSend: () => this.stats.pushes++,
        onAck: (stream, response) => this.ack(stream, response),
        onNack: (stream, response, keptVersion, message) => this.nack(stream, response, keptVersion, message),
      },
    );
    const pkg = loadGrpcPackage(['envoy/service/extension/v3/config_discovery.proto']) as any;
    const definition: ServiceDefinition = pkg.envoy.service.extension.v3.ExtensionConfigDiscoveryService.service;
    this.service = {
      definition,
      implementation: { StreamExtensionConfigs: this.sotw.stream, FetchExtensionConfigs: this.sotw.fetch },
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
    return this.publishFilter(artifact.name, bytes, path.join(path.dirname(manifestPath), 'ecds'), opts);
  }

  /**
   * Publishes filter bytes whose sha256 the caller has already checked against their pin
   * (a manifest, or the control plane's push), as `palisade.policy.<name>`. The pinned copy
   * goes to the `codeDir` option, else to `defaultCodeDir`.
   */
  publishFilter(name: string, bytes: Buffer, defaultCodeDir: string | undefined, opts: PublishOptions = {}): PublishedPolicy {
    const codeDir = this.options.codeDir ?? defaultCodeDir;
    if (!codeDir) throw new Error('ecds: no directory for the pinned filter copies (codeDir)');
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const wasmPath = pinCopy(path.resolve(codeDir), `${name}.${sha256}.wasm`, bytes);
    this.pinned.add(wasmPath);
    const resource = policyResourceName(name);
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
    this.changes.emit('publish', [policy.resource]);
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

  /** The version an Envoy last acknowledged for a resource: what Envoy runs. */
  acknowledged(resource: string): PublishedPolicy | undefined {
    return this.acked.get(resource);
  }

  close(): void {
    for (const w of this.watchers.splice(0)) w.close();
    this.sotw.endAll();
  }

  /** The served policies a subscription names, in name order; their versions joined are the response's. */
  private snapshot(names: string[]): PolicySnapshot | undefined {
    const policies = selectByName(this.current, names).map(([, policy]) => policy);
    if (policies.length === 0) return undefined;
    return {
      version: policies.map((p) => p.version).join('+'),
      resources: policies.map((p) => ({ type_url: TYPED_EXTENSION_CONFIG_TYPE, value: encodeExtensionConfig(p) })),
      policies,
    };
  }

  private ack(stream: SotwStream<PolicySnapshot>, response: PolicySnapshot): void {
    this.stats.acks++;
    for (const { resource, version } of response.policies) {
      const policy = this.current.get(resource);
      if (policy?.version === version) this.acked.set(resource, policy);
    }
    this.prune();
    this.options.onAck?.(response.version, resourcesOf(response), stream.node);
  }

  /** Reverts the rejected resources to their last acknowledged versions, so no one else is handed them. */
  private nack(stream: SotwStream<PolicySnapshot>, response: PolicySnapshot, keptVersion: string, message: string): void {
    this.stats.nacks++;
    for (const { resource } of response.policies) {
      const previous = this.acked.get(resource);
      if (previous) this.current.set(resource, previous);
      else this.current.delete(resource);
    }
    const report: NackReport = {
      resource: resourcesOf(response),
      rejectedVersion: response.version,
      keptVersion,
      message,
      ...(stream.node ? { node: stream.node } : {}),
    };
    this.options.log?.warn(report, 'ecds: Envoy rejected the policy filter; previous version kept');
    this.prune();
    this.options.onNack?.(report);
  }

  /**
   * Deletes pinned copies nobody can still load: a copy stays while it is served (current
   * or last acknowledged), in flight to an Envoy that has not answered yet, or what a
   * connected Envoy last acknowledged. Envoy reads the file when it applies the config.
   */
  private prune(): void {
    const keep = new Set<string>();
    for (const p of [...this.current.values(), ...this.acked.values()]) keep.add(p.wasmPath);
    for (const stream of this.sotw.streams()) {
      for (const p of [...(stream.pending?.policies ?? []), ...(stream.acked?.policies ?? [])]) keep.add(p.wasmPath);
    }
    for (const file of this.pinned) {
      if (keep.has(file)) continue;
      rmSync(file, { force: true });
      this.pinned.delete(file);
      this.options.log?.info({ wasm: file }, 'ecds: unused policy copy deleted');
    }
  }
}

function resourcesOf(response: PolicySnapshot): string[] {
  return response.policies.map((p) => p.resource);
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
