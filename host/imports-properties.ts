/** Host calls on properties: Envoy's attributes (attributes.ts) and the host's own, and filter state. */
import { Status } from './abi.ts';
import { splitPath, resolve, serialize, hotProperty, Message, type PropertyPath, type PropertyValue } from './properties.ts';
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

  /** The first segment: the plugin's attributes, then the stream's, then what the filter set. */
  const top = (name: string): PropertyValue | undefined => {
    switch (name) {
      case 'plugin_root_id':
        return host.options.rootId;
      case 'plugin_vm_id':
        return host.options.vmId;
    }
    const s = host.stream();
    if (!s) return name === 'plugin_name' ? host.pluginName : undefined;
    return s.attributes.property(name) ?? s.filterState?.get(name);
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
    proxy_set_property: (kp: number, ks: number, vp: number, vs: number) => {
      refuseIfRestricted(host, 'env', 'proxy_set_property');
      const key = mem.read(kp, ks);
      const value = mem.read(vp, vs);
      if (!key || !value) return Status.INVALID_MEMORY_ACCESS;
      const s = host.stream();
      if (!s) return Status.NOT_FOUND;
      (s.filterState ??= new Map()).set(splitPath(key).join('.'), value.slice());
      return Status.OK;
    },
  };
};
