/** Host calls on buffers (types 0–8): bodies while their phase is open, configurations, the http_call answer. */
import { Status, BufferType, BUFFER_TYPE_MAX } from './abi.ts';
import { Open } from './stream.ts';
import { concat } from './pairs.ts';
import type { HostContext, ImportArea } from './host-context.ts';
import { refuseIfRestricted } from './restricted.ts';

const EMPTY = new Uint8Array(0);

export const bufferImports: ImportArea = (host) => {
  const mem = host.mem;
  return {
    proxy_get_buffer_status: (type: number, lengthPtr: number, flagsPtr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_get_buffer_status');
      if (type >>> 0 > BUFFER_TYPE_MAX) return Status.BAD_ARGUMENT;
      const buffer = bufferOf(host, type);
      if (!buffer) return Status.NOT_FOUND;
      return mem.setU32(lengthPtr, buffer.length) && mem.setU32(flagsPtr, 0) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
    proxy_get_buffer_bytes: (type: number, start: number, length: number, ptrPtr: number, sizePtr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_get_buffer_bytes');
      if (type >>> 0 > BUFFER_TYPE_MAX) return Status.BAD_ARGUMENT;
      const buffer = bufferOf(host, type);
      if (!buffer) return Status.NOT_FOUND;
      start >>>= 0;
      length >>>= 0;
      if (start > buffer.length) return Status.BAD_ARGUMENT;
      if (start + length > buffer.length) length = buffer.length - start;
      if (length === 0) return Status.OK;
      return mem.copyOut(buffer.subarray(start, start + length), ptrPtr, sizePtr);
    },
    proxy_set_buffer_bytes: (type: number, start: number, length: number, ptr: number, size: number) => {
      refuseIfRestricted(host, 'env', 'proxy_set_buffer_bytes');
      if (type >>> 0 > BUFFER_TYPE_MAX) return Status.BAD_ARGUMENT;
      const data = mem.read(ptr, size);
      if (!data) return Status.INVALID_MEMORY_ACCESS;
      return writeBody(host, type, start >>> 0, length >>> 0, data.slice());
    },
  };
};

function bufferOf(host: HostContext, type: number): Uint8Array | null {
  const s = host.stream();
  switch (type) {
    case BufferType.HTTP_REQUEST_BODY:
      return s && s.open & Open.REQUEST_BODY ? s.requestBody : EMPTY;
    case BufferType.HTTP_RESPONSE_BODY:
      return s && s.open & Open.RESPONSE_BODY ? s.responseBody : EMPTY;
    case BufferType.HTTP_CALL_RESPONSE_BODY:
      return host.httpCallResponse ? host.httpCallResponse.body : null;
    case BufferType.VM_CONFIGURATION:
      return host.options.vmConfiguration;
    case BufferType.PLUGIN_CONFIGURATION:
      return host.pluginConfiguration;
    default:
      return EMPTY;
  }
}

/** Envoy's Buffer::copyFrom: prepend (0,0), replace all (0, ≥size), append (start ≥ size). */
function writeBody(host: HostContext, type: number, start: number, length: number, data: Uint8Array): number {
  const s = host.stream();
  const field =
    type === BufferType.HTTP_REQUEST_BODY && s && s.open & Open.REQUEST_BODY ? 'requestBody'
    : type === BufferType.HTTP_RESPONSE_BODY && s && s.open & Open.RESPONSE_BODY ? 'responseBody'
    : null;
  if (!s || !field) return Status.BAD_ARGUMENT;
  const current = s[field];
  if (start === 0 && length === 0) s[field] = concat(data, current);
  else if (start === 0 && length >= current.length) s[field] = data;
  else if (start >= current.length) s[field] = concat(current, data);
  else return Status.BAD_ARGUMENT;
  return Status.OK;
}
