/**
 * Envoy's attributes of one request as `proxy_get_property` reaches them
 * (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes):
 * `request.*`, `response.*`, `source.*`, `destination.*`, `connection.*`, `metadata`,
 * `plugin_name`, with the request's `properties` overrides on top.
 */
import { Lookup, metadataMessage, resolve, HotProperty, type PropertyPath, type PropertyValue } from './properties.ts';
import { encodeMetadata } from './metadata-pb.ts';
import type { FilterRequest } from './request.ts';
import type { Pair } from './pairs.ts';

/** What of the stream the attributes read as it is now (the filter may have changed it). */
interface StreamMaps {
  readonly requestHeaders: Pair[];
  readonly responseHeaders: Pair[];
  readonly responseBody: Uint8Array;
  /** What filters set with proxy_set_property, by filter-state name (`wasm.<key>`). */
  readonly filterState: ReadonlyMap<string, Uint8Array> | null;
}

/** What the attributes take from the plugin running the stream (the VM itself, in vm.ts). */
export interface Plugin {
  readonly pluginName: string;
  readonly options: { readonly clock: () => bigint };
}

const NO_METADATA = Object.freeze({});
let connectionIds = 0n;

export class Attributes {
  private startedAt: bigint | undefined;
  private connectionId: bigint | undefined;

  constructor(
    private readonly request: FilterRequest,
    private readonly stream: StreamMaps,
    private readonly plugin: Plugin,
  ) {}

  /**
   * The property at `path`; `top` answers the first segment (the host's own attributes, then
   * property() below). The one fast path: the two paths a policy filter reads on every
   * request, the caller's URI SAN and the whole `metadata` message (PropertyPath.hot), are
   * answered straight from the request without walking scopes, unless the request overrides
   * properties. The answer is the same one the walk gives (test/host/properties.test.ts);
   * `metadata` comes as its wire bytes (a view of the encoder's scratch buffer, copied into
   * the module at once), or null when it cannot be serialized, which the caller answers
   * with SERIALIZATION_FAILURE as it does for the walk's Message.
   */
  lookup(path: PropertyPath, top: (name: string) => PropertyValue | undefined): PropertyValue | undefined {
    if (path.hot !== HotProperty.NONE && this.request.properties === undefined) {
      return path.hot === HotProperty.METADATA ? encodeMetadata(this.filterMetadata()) : this.request.source?.principal;
    }
    return resolve(path.segments, top);
  }

  /** A top-level attribute: an override, else Envoy's value. */
  property(name: string): PropertyValue | undefined {
    const overrides = this.request.properties;
    if (overrides) {
      if (Object.hasOwn(overrides, name)) return overrides[name];
      if (Object.keys(overrides).some((k) => k.startsWith(`${name}.`))) return new Scope(this, name);
    }
    switch (name) {
      case 'request':
      case 'source':
      case 'destination':
      case 'connection':
        return new Scope(this, name);
      case 'response':
        return this.stream.responseHeaders.length ? new Scope(this, name) : undefined;
      case 'connection_id':
        return this.connection();
      case 'metadata':
        return this.metadata();
      case 'plugin_name':
        return this.plugin.pluginName;
      case 'filter_state':
        return new FilterState(this.stream);
      default:
        return undefined;
    }
  }

  /** `scope.key`: an override, else Envoy's value. */
  attribute(scope: string, key: string): PropertyValue | undefined {
    const overrides = this.request.properties;
    const dotted = overrides && `${scope}.${key}`;
    if (dotted && Object.hasOwn(overrides, dotted)) return overrides[dotted];
    const req = this.stream.requestHeaders;
    switch (scope) {
      case 'request':
        switch (key) {
          case 'path': return headerValue(req, ':path');
          case 'url_path': return headerValue(req, ':path')?.split('?')[0];
          case 'host': return headerValue(req, ':authority');
          case 'scheme': return headerValue(req, ':scheme');
          case 'method': return headerValue(req, ':method');
          case 'headers': return new Headers(req);
          case 'referer': return headerValue(req, 'referer');
          case 'useragent': return headerValue(req, 'user-agent');
          case 'id': return headerValue(req, 'x-request-id');
          case 'protocol': return 'HTTP/1.1';
          case 'time': return (this.startedAt ??= this.plugin.options.clock());
          case 'query': {
            const path = headerValue(req, ':path') ?? '';
            const q = path.indexOf('?');
            return q < 0 ? '' : path.slice(q + 1);
          }
          case 'size': {
            const length = headerValue(req, 'content-length');
            return length !== undefined && /^\d+$/.test(length) ? BigInt(length) : undefined;
          }
        }
        return undefined;
      case 'response':
        switch (key) {
          case 'code': return BigInt(headerValue(this.stream.responseHeaders, ':status') ?? 0);
          case 'headers': return new Headers(this.stream.responseHeaders);
          case 'size': return BigInt(this.stream.responseBody.length);
        }
        return undefined;
      case 'source':
      case 'destination': {
        const address = (scope === 'source' ? this.request.source?.address : this.request.destination?.address) ?? '127.0.0.1:0';
        if (key === 'address') return address;
        if (key === 'port') return BigInt(address.slice(address.lastIndexOf(':') + 1) || 0);
        return undefined;
      }
      case 'connection': {
        const principal = this.request.source?.principal;
        switch (key) {
          case 'mtls': return principal !== undefined;
          case 'uri_san_peer_certificate': return principal;
          case 'id': return this.connection();
        }
        return undefined;
      }
    }
    return undefined;
  }

  /** The `metadata` attribute: envoy.config.core.v3.Metadata of the request's dynamic metadata. */
  private metadata(): PropertyValue {
    return metadataMessage(this.filterMetadata());
  }

  private filterMetadata(): Record<string, PropertyValue> {
    return (this.request.metadata ?? NO_METADATA) as Record<string, PropertyValue>;
  }

  private connection(): bigint {
    return (this.connectionId ??= ++connectionIds);
  }
}

/** One of the attribute scopes (`request`, `connection`, …), looked up key by key. */
class Scope extends Lookup {
  constructor(private readonly attributes: Attributes, private readonly scope: string) {
    super();
  }
  get(key: string): PropertyValue | undefined {
    return this.attributes.attribute(this.scope, key);
  }
}

/** `filter_state.<name>`: the stream's filter state by its full name; Envoy cannot serialize it whole. */
class FilterState extends Lookup {
  constructor(private readonly stream: StreamMaps) {
    super();
  }
  get(name: string): PropertyValue | undefined {
    return this.stream.filterState?.get(name);
  }
}

/** `request.headers` / `response.headers`: Envoy joins repeated values with ','. */
class Headers extends Lookup {
  constructor(private readonly map: Pair[]) {
    super();
  }
  get(key: string): PropertyValue | undefined {
    return headerValue(this.map, key.toLowerCase());
  }
}

function headerValue(map: Pair[], name: string): string | undefined {
  let out: string | undefined;
  for (const [k, v] of map) if (k === name) out = out === undefined ? v : `${out},${v}`;
  return out;
}
