/**
 * Host calls on the life of contexts and streams: which context a call acts for, continuing,
 * closing or answering a stream, the root context being done, and the few leftovers Envoy
 * links (status, foreign functions, emscripten and pthread stubs).
 */
import { Status, StreamType } from './abi.ts';
import { decodeRawPairs } from './pairs.ts';
import { headerPairs } from './imports-headers.ts';
import type { ImportArea } from './host-context.ts';
import { givenGrpcStatus } from './grpc-reply.ts';
import { refuseIfRestricted } from './restricted.ts';

export const lifecycleImports: ImportArea = (host) => {
  const mem = host.mem;
  return {
    proxy_get_status: (codePtr: number, ptrPtr: number, sizePtr: number) =>
      (refuseIfRestricted(host, 'env', 'proxy_get_status'), mem.setU32(codePtr, 0) ? mem.copyOut('', ptrPtr, sizePtr) : Status.INVALID_MEMORY_ACCESS),
    proxy_set_effective_context: (id: number) => (refuseIfRestricted(host, 'env', 'proxy_set_effective_context'), host.setEffectiveContext(id >>> 0) ? Status.OK : Status.BAD_ARGUMENT),
    proxy_done: () => (refuseIfRestricted(host, 'env', 'proxy_done'), host.done() ? Status.OK : Status.NOT_FOUND),
    proxy_send_local_response: (status: number, dp: number, ds: number, bp: number, bs: number, hp: number, hs: number, grpc: number) => {
      refuseIfRestricted(host, 'env', 'proxy_send_local_response');
      const details = mem.readString(dp, ds);
      const body = mem.read(bp, bs);
      const headers = mem.read(hp, hs);
      if (details === null || !body || !headers) return Status.INVALID_MEMORY_ACCESS;
      const s = host.stream();
      if (s && !s.reply && !s.resetDetails) {
        s.reply = { status: status >>> 0, details: details.replace(/\s/g, '_'), body: body.slice(), headers: headerPairs(decodeRawPairs(headers)), grpcStatus: givenGrpcStatus(grpc) };
        s.wake?.();
      }
      return Status.OK;
    },
    proxy_continue_stream: (type: number) => {
      refuseIfRestricted(host, 'env', 'proxy_continue_stream');
      if (type >>> 0 > StreamType.UPSTREAM) return Status.BAD_ARGUMENT;
      if (type === StreamType.UPSTREAM) return Status.UNIMPLEMENTED;
      const s = host.stream();
      if (s && (type === StreamType.REQUEST || type === StreamType.RESPONSE)) {
        s.continued = true;
        s.wake?.();
      }
      return Status.OK;
    },
    proxy_close_stream: (type: number) => {
      refuseIfRestricted(host, 'env', 'proxy_close_stream');
      if (type >>> 0 > StreamType.UPSTREAM) return Status.BAD_ARGUMENT;
      const s = host.stream();
      if (s && (type === StreamType.REQUEST || type === StreamType.RESPONSE) && !s.resetDetails) {
        s.resetDetails = 'wasm_close_stream';
        s.wake?.();
      }
      return Status.OK;
    },
    proxy_call_foreign_function: (np: number, ns: number, ap: number, as: number) =>
      (refuseIfRestricted(host, 'env', 'proxy_call_foreign_function'), mem.read(np, ns) && mem.read(ap, as) ? Status.NOT_FOUND : Status.INVALID_MEMORY_ACCESS),
    emscripten_notify_memory_growth: () => (refuseIfRestricted(host, 'env', 'emscripten_notify_memory_growth'), void mem.view()),
    pthread_equal: (a: number, b: number) => (refuseIfRestricted(host, 'env', 'pthread_equal'), a === b ? 1 : 0),
  };
};
