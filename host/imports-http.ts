/**
 * Host calls to other services: proxy_http_call to the clusters the caller configured (the
 * answer reaches proxy_on_http_call_response on the root context); no gRPC services exist.
 */
import { Status, LogLevel } from './abi.ts';
import { decodeRawPairs, encodeUtf8, type Pair } from './pairs.ts';
import { headerPairs } from './imports-headers.ts';
import type { HostContext, HttpCallResponse, ImportArea } from './host-context.ts';
import { refuseIfRestricted } from './restricted.ts';

const EMPTY = new Uint8Array(0);

export const httpImports: ImportArea = (host) => {
  const mem = host.mem;
  const pending = new Set<number>();
  let nextToken = 1;

  /** Delivers an answer (or failure: null) to proxy_on_http_call_response on the root context. */
  const deliver = (token: number, response: { headers: Pair[]; body: Uint8Array } | null): void => {
    if (!pending.delete(token)) return;
    host.httpCallResponse = response;
    try {
      host.callRoot('proxy_on_http_call_response', token, response?.headers.length ?? 0, response?.body.length ?? 0, 0);
    } finally {
      host.httpCallResponse = null;
    }
  };

  const start = (cluster: string, headers: Pair[], body: Uint8Array, timeoutMs: number): number => {
    const upstream = Object.hasOwn(host.options.clusters, cluster) ? host.options.clusters[cluster] : undefined;
    if (!upstream) return 0;
    const has = (name: string) => headers.some(([k]) => k === name);
    if (!has(':path') || !has(':method') || !has(':authority')) return 0;
    if (body.length > 0) headers.push(['content-length', String(body.length)]);
    const token = nextToken++;
    pending.add(token);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<HttpCallResponse>((done) => {
      if (timeoutMs > 0) timer = setTimeout(() => done({ status: 504, body: 'upstream request timeout' }), timeoutMs);
    });
    Promise.race([Promise.resolve().then(() => upstream({ cluster, headers, body, timeoutMs })), timeout]).then(
      (res) => deliver(token, normalizeResponse(res)),
      (err) => {
        logFailure(host, cluster, err);
        deliver(token, null);
      },
    ).finally(() => clearTimeout(timer));
    return token;
  };

  return {
    proxy_http_call: (up: number, us: number, hp: number, hs: number, bp: number, bs: number, tp: number, ts: number, timeout: number, tokenPtr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_http_call');
      const cluster = mem.readString(up, us);
      const headerBytes = mem.read(hp, hs);
      const body = mem.read(bp, bs);
      const trailers = mem.read(tp, ts);
      if (cluster === null || !headerBytes || !body || !trailers) return Status.INVALID_MEMORY_ACCESS;
      if (!mem.setU32(tokenPtr, 0)) return Status.INVALID_MEMORY_ACCESS;
      if (timeout < 0) return Status.BAD_ARGUMENT;
      const token = start(cluster, headerPairs(decodeRawPairs(headerBytes)), body.slice(), timeout);
      if (token === 0) return Status.BAD_ARGUMENT; // an unknown cluster or a request without :path, :method, :authority
      mem.setU32(tokenPtr, token);
      return Status.OK;
    },
    // No gRPC services exist in this host: Envoy answers an unknown cluster with PARSE_FAILURE.
    proxy_grpc_call: () => (refuseIfRestricted(host, 'env', 'proxy_grpc_call'), Status.PARSE_FAILURE),
    proxy_grpc_stream: () => (refuseIfRestricted(host, 'env', 'proxy_grpc_stream'), Status.PARSE_FAILURE),
    proxy_grpc_close: () => (refuseIfRestricted(host, 'env', 'proxy_grpc_close'), Status.NOT_FOUND),
    proxy_grpc_cancel: () => (refuseIfRestricted(host, 'env', 'proxy_grpc_cancel'), Status.NOT_FOUND),
    proxy_grpc_send: (_token: number, ptr: number, size: number) => (refuseIfRestricted(host, 'env', 'proxy_grpc_send'), mem.read(ptr, size) ? Status.NOT_FOUND : Status.INVALID_MEMORY_ACCESS),
  };
};

function logFailure(host: HostContext, cluster: string, err: unknown): void {
  host.emitLog(LogLevel.debug, `http_call to ${cluster} failed: ${(err as Error)?.message ?? err}`, host.rootContextId);
}

function normalizeResponse(res: HttpCallResponse): { headers: Pair[]; body: Uint8Array } {
  const given = res.headers ?? [];
  const pairs: Pair[] = Array.isArray(given) ? given : Object.entries(given);
  const body = typeof res.body === 'string' ? encodeUtf8(res.body) : (res.body ?? EMPTY);
  return { headers: [[':status', String(res.status)], ...pairs.map(([k, v]): Pair => [k.toLowerCase(), String(v)])], body };
}
