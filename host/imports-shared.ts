/** Host calls on what VMs with the same VM id share: shared data (compare-and-swap) and shared queues. */
import { Status } from './abi.ts';
import * as shared from './shared.ts';
import type { ImportArea } from './host-context.ts';
import { refuseIfRestricted } from './restricted.ts';

export const sharedImports: ImportArea = (host) => {
  const mem = host.mem;
  const store = host.sharedData;
  return {
    // Keys and values are compared and copied in place in module memory (SharedData).
    proxy_get_shared_data: (kp: number, ks: number, ptrPtr: number, sizePtr: number, casPtr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_get_shared_data');
      if (!mem.inBounds(kp, ks)) return Status.INVALID_MEMORY_ACCESS;
      const record = store.lookup(mem.dv, kp >>> 0, ks >>> 0);
      if (record < 0) return Status.NOT_FOUND;
      const size = store.valueLength(record);
      let ptr = 0;
      if (size > 0) {
        ptr = mem.alloc(size); // may grow memory: alloc refreshes mem.dv
        if (ptr === 0) return Status.INVALID_MEMORY_ACCESS;
        store.copyValue(record, mem.dv, ptr);
      }
      if (!mem.setU32(ptrPtr, ptr) || !mem.setU32(sizePtr, size)) return Status.INVALID_MEMORY_ACCESS;
      return mem.setU32(casPtr, store.version(record)) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
    proxy_set_shared_data: (kp: number, ks: number, vp: number, vs: number, cas: number) => {
      refuseIfRestricted(host, 'env', 'proxy_set_shared_data');
      if (!mem.inBounds(kp, ks) || !mem.inBounds(vp, vs)) return Status.INVALID_MEMORY_ACCESS;
      return store.set(mem.dv, kp >>> 0, ks >>> 0, mem.dv, vp >>> 0, vs >>> 0, cas >>> 0);
    },
    proxy_register_shared_queue: (np: number, ns: number, tokenPtr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_register_shared_queue');
      const name = mem.readString(np, ns);
      if (name === null) return Status.INVALID_MEMORY_ACCESS;
      const token = shared.registerQueue(host.options.vmId, name, host.queueOwner);
      return mem.setU32(tokenPtr, token) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
    proxy_resolve_shared_queue: (vp: number, vs: number, np: number, ns: number, tokenPtr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_resolve_shared_queue');
      const vmId = mem.readString(vp, vs);
      const name = mem.readString(np, ns);
      if (vmId === null || name === null) return Status.INVALID_MEMORY_ACCESS;
      const token = shared.resolveQueue(vmId, name);
      if (token === undefined) return Status.NOT_FOUND;
      return mem.setU32(tokenPtr, token) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
    proxy_dequeue_shared_queue: (token: number, ptrPtr: number, sizePtr: number) => {
      refuseIfRestricted(host, 'env', 'proxy_dequeue_shared_queue');
      const item = shared.dequeue(token >>> 0);
      return typeof item === 'number' ? item : mem.copyOut(item, ptrPtr, sizePtr);
    },
    proxy_enqueue_shared_queue: (token: number, ptr: number, size: number) => {
      refuseIfRestricted(host, 'env', 'proxy_enqueue_shared_queue');
      const item = mem.read(ptr, size);
      if (!item) return Status.INVALID_MEMORY_ACCESS;
      return shared.enqueue(token >>> 0, item.slice());
    },
  };
};
