/**
 * Host calls on header maps (map types 0–7): which map a phase may read or write, Envoy's
 * HeaderMapImpl order (pseudo-headers first), and no value that is not an RFC 9110 field value.
 */
import { Status, MapType, MAP_TYPE_MAX } from './abi.ts';
import { decodeRawPairs, decodeUtf8, utf8Length, type Pair } from './pairs.ts';
import { PAIRS } from './guest-memory.ts';
import { AddressCache } from './address-cache.ts';
import { isFieldValue } from './field-value.ts';
import { Open } from './stream.ts';
import type { HostContext, ImportArea } from './host-context.ts';
import { refuseIfRestricted } from './restricted.ts';

export const headerImports: ImportArea = (host) => {
  const mem = host.mem;
  const mapOk = (type: number) => type >>> 0 <= MAP_TYPE_MAX;
  /** Names come nearly always from the module's static data: decoded (lowercased, as Envoy keys maps) once per address. */
  const names = new AddressCache((bytes) => decodeUtf8(bytes).toLowerCase());
  const headerName = (ptr: number, len: number): string | null => (mem.inBounds(ptr, len) ? names.get(mem.u8, ptr >>> 0, len >>> 0) : null);

  const edit = (type: number, kp: number, ks: number, vp: number, vs: number, change: (map: Pair[], key: string, value: string) => void): number => {
    if (!mapOk(type)) return Status.BAD_ARGUMENT;
    const key = headerName(kp, ks);
    const value = mem.readString(vp, vs);
    if (key === null || value === null) return Status.INVALID_MEMORY_ACCESS;
    const map = headerMap(host, type, true);
    if (!map) return Status.BAD_ARGUMENT;
    if (!isFieldValue(mem.view(), vp >>> 0, (vp >>> 0) + (vs >>> 0))) return refuseHeaderValue(host);
    change(map, key, value);
    return Status.OK;
  };

  return {
    proxy_get_header_map_value: (type: number, kp: number, ks: number, ptrPtr: number, sizePtr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_get_header_map_value');
      if (!mapOk(type)) return Status.BAD_ARGUMENT;
      const name = headerName(kp, ks);
      if (name === null) return Status.INVALID_MEMORY_ACCESS;
      const map = headerMap(host, type, false);
      if (!map) return Status.BAD_ARGUMENT;
      const entry = map.find(([k]) => k === name);
      if (!entry) return Status.NOT_FOUND;
      return mem.copyOut(entry[1], ptrPtr, sizePtr);
    },
    proxy_add_header_map_value: (type: number, kp: number, ks: number, vp: number, vs: number) => (refuseIfRestricted(host, 'env', 'proxy_add_header_map_value'), edit(type, kp, ks, vp, vs, addHeader)),
    proxy_replace_header_map_value: (type: number, kp: number, ks: number, vp: number, vs: number) => (refuseIfRestricted(host, 'env', 'proxy_replace_header_map_value'), edit(type, kp, ks, vp, vs, replaceHeader)),
    proxy_remove_header_map_value: (type: number, kp: number, ks: number) => (refuseIfRestricted(host, 'env', 'proxy_remove_header_map_value'), edit(type, kp, ks, kp, 0, removeAll)),
    proxy_get_header_map_pairs: (type: number, ptrPtr: number, sizePtr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_get_header_map_pairs');
      if (!mapOk(type)) return Status.BAD_ARGUMENT;
      return mem.place(headerMap(host, type, false) ?? [], PAIRS, ptrPtr, sizePtr);
    },
    proxy_set_header_map_pairs: (type: number, ptr: number, size: number) => {
      refuseIfRestricted(host, 'env', 'proxy_set_header_map_pairs');
      if (!mapOk(type)) return Status.BAD_ARGUMENT;
      const bytes = mem.read(ptr, size);
      if (!bytes) return Status.INVALID_MEMORY_ACCESS;
      const map = headerMap(host, type, true);
      if (!map) return Status.BAD_ARGUMENT;
      const pairs = decodeRawPairs(bytes);
      if (!pairs) return Status.BAD_ARGUMENT;
      if (!pairs.every(([, v]) => isFieldValue(v, 0, v.length))) return refuseHeaderValue(host);
      map.length = 0;
      for (const [k, v] of headerPairs(pairs)) addHeader(map, k, v);
      return Status.OK;
    },
    proxy_get_header_map_size: (type: number, sizePtr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_get_header_map_size');
      if (!mapOk(type)) return Status.BAD_ARGUMENT;
      const map = headerMap(host, type, true);
      if (!map) return Status.BAD_ARGUMENT;
      // Envoy answers HeaderMap::byteSize(): the bytes of all keys and values.
      let size = 0;
      for (const [k, v] of map) size += utf8Length(k) + utf8Length(v);
      return mem.setU32(sizePtr, size) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
  };
};

/** The header map of `type` as Envoy's getConstMap / getMap would find it now. */
function headerMap(host: HostContext, type: number, write: boolean): Pair[] | null {
  const s = host.stream();
  switch (type) {
    case MapType.REQUEST_HEADERS:
      if (!s) return null;
      return s.open & Open.REQUEST_HEADERS || (!write && s.open & Open.LOG) ? s.requestHeaders : null;
    case MapType.RESPONSE_HEADERS:
      if (!s) return null;
      return s.open & Open.RESPONSE_HEADERS || (!write && s.open & Open.LOG) ? s.responseHeaders : null;
    case MapType.HTTP_CALL_RESPONSE_HEADERS:
      return !write && host.httpCallResponse ? host.httpCallResponse.headers : null;
    default:
      return null;
  }
}

/**
 * A header value that is not an RFC 9110 field value (CR, LF, NUL, other controls) is never
 * stored, and the stream is reset: whatever the module does with BAD_ARGUMENT, the request
 * is not forwarded (docs/host.md, "Header values").
 */
function refuseHeaderValue(host: HostContext): number {
  const s = host.stream();
  if (s && !s.resetDetails) {
    s.resetDetails = 'wasm_invalid_header_value';
    s.wake?.();
  }
  return Status.BAD_ARGUMENT;
}

/** Serialized pairs the module passed (headers of a local reply, an http_call, a map), as the header map keys them. */
export function headerPairs(raw: Pair<Uint8Array>[] | null): Pair[] {
  return (raw ?? []).map(([k, v]) => [decodeUtf8(k).toLowerCase(), decodeUtf8(v)]);
}

/**
 * Envoy's HeaderMapImpl keeps pseudo-headers before regular ones (nghttp2 requires it): a
 * pseudo-header goes after the last pseudo-header, anything else at the end.
 */
function addHeader(map: Pair[], key: string, value: string): void {
  if (key.charCodeAt(0) !== 0x3a) {
    map.push([key, value]);
    return;
  }
  let end = 0;
  while (end < map.length && map[end][0].charCodeAt(0) === 0x3a) end++;
  map.splice(end, 0, [key, value]);
}

/** Envoy's setCopy (runtime flag http_set_copy_replace_all_headers, on): remove every value, then add one. */
function replaceHeader(map: Pair[], key: string, value: string): void {
  removeAll(map, key);
  addHeader(map, key, value);
}

function removeAll(map: Pair[], key: string): void {
  let w = 0;
  for (const entry of map) if (entry[0] !== key) map[w++] = entry;
  map.length = w;
}
