/** Host calls on properties: Envoy's attributes (attributes.ts) and the host's own, and filter state. */
import { Status } from './abi.ts';
import { splitPath, resolve, serialize, hotProperty, Message, WASM_STATE, type PropertyPath, type PropertyValue } from './properties.ts';
import { decodeUtf8 } from './pairs.ts';
import { BYTES } from './guest-memory.ts';
import { AddressCache } from './address-cache.ts';
import type { ImportArea } from './host-context.ts';
import { refuseIfRestricted } from './restricted.ts';

export const propertyImports: ImportArea = (host) => {
  const mem = host.mem;
  /** Filters read the same few paths on every request: decoded once per address. */
  const paths = new AddressCache((bytes): PropertyPath => {
    const segments = splitPath(bytes);
    return { segments, hot: hotProperty(segments) };
  });

  /** Filters set the same few keys from their static data: the filter-state name made once per address. */
  const stateNames = new AddressCache((bytes) => WASM_STATE + decodeUtf8(bytes));

  /** The first segment: the plugin's attributes, then the stream's, then what the filter set (Envoy's order). */
  const top = (name: string): PropertyValue | undefined => {
    switch (name) {
      case 'plugin_root_id':
        return host.options.rootId;
      case 'plugin_vm_id':
        return host.options.vmId;
    }
    const s = host.stream();
    if (!s) return name === 'plugin_name' ? host.pluginName : undefined;
    return s.attributes.property(name) ?? s.filterState?.get(WASM_STATE + name);
  };

  return {
    proxy_get_property: (pp: number, ps: number, ptrPtr: number, sizePtr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_get_property');
      if (!mem.inBounds(pp, ps)) return Status.INVALID_MEMORY_ACCESS;
      const path = paths.get(mem.u8, pp >>> 0, ps >>> 0);
      const s = host.stream();
      const value = s ? s.attributes.lookup(path, top) : resolve(path.segments, top);
      if (value === undefined) return Status.NOT_FOUND;
      if (typeof value === 'string') return mem.copyOut(value, ptrPtr, sizePtr); // written straight into the module
      if (value instanceof Message) {
        // A message that cannot be serialized (nested too deep): SERIALIZATION_FAILURE, as Envoy answers.
        const bytes = value.encode();
        return bytes ? mem.place(bytes, BYTES, ptrPtr, sizePtr) : Status.SERIALIZATION_FAILURE;
      }
      const bytes = serialize(value);
      if (typeof bytes === 'number') return bytes;
      return mem.copyOut(bytes, ptrPtr, sizePtr);
    },
    /**
     * Envoy's setProperty (context.cc): the key whole, NULs included (it is a name, not a
     * path), becomes filter state `wasm.<key>` holding the value's bytes; set again, the value
     * is replaced (the default prototype is not read-only); it lives as long as the stream.
     * No stream (the root context): NOT_FOUND.
     */
    proxy_set_property: (kp: number, ks: number, vp: number, vs: number) => {
      refuseIfRestricted(host, 'env', 'proxy_set_property');
      if (!mem.inBounds(kp, ks) || !mem.inBounds(vp, vs)) return Status.INVALID_MEMORY_ACCESS;
      const s = host.stream();
      if (!s) return Status.NOT_FOUND;
      const u8 = mem.u8; // current: inBounds() renewed the view
      (s.filterState ??= new Map()).set(stateNames.get(u8, kp >>> 0, ks >>> 0), u8.slice(vp >>> 0, (vp >>> 0) + (vs >>> 0)));
      return Status.OK;
    },
  };
};
