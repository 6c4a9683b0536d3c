/**
 * Process-wide state that Envoy keeps per VM id across all filter instances (its global
 * shared-data and shared-queue stores, proxy-wasm-cpp-host src/shared_data.cc and
 * src/shared_queue.cc): data set by one instance is seen by every instance with the same
 * VM id, with compare-and-swap versions.
 */
import { Status } from './abi.ts';
import { encodeUtf8 } from './pairs.ts';
import { SharedData } from './shared-data.ts';

const stores = new Map<string, SharedData>();

/**
 * The shared-data store of VM id `vmId` (created on first use), for the host's
 * proxy_get_shared_data and proxy_set_shared_data: look the key up in place in module
 * memory, copy the value out, and set with compare-and-swap (see SharedData). A VM keeps
 * the store rather than finding it by name on every call.
 */
export function sharedStore(vmId: string): SharedData {
  let store = stores.get(vmId);
  if (!store) stores.set(vmId, (store = new SharedData()));
  return store;
}

const viewOf = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
const keyView = (key: string | Uint8Array): DataView => viewOf(typeof key === 'string' ? encodeUtf8(key) : key);

/**
 * The value (a view: copy it before the next set) and version stored for `key` (UTF-8
 * bytes or a string). This and setSharedData are for tests and tools, which hold keys and
 * values as strings or arrays; the host goes through sharedStore.
 */
export function getSharedData(vmId: string, key: string | Uint8Array): { value: Uint8Array; cas: number } | undefined {
  const store = sharedStore(vmId);
  const k = keyView(key);
  const record = store.lookup(k, 0, k.byteLength);
  return record < 0 ? undefined : { value: store.value(record), cas: store.version(record) };
}

/**
 * `cas` 0: unconditional. Otherwise it must equal the stored version (a new key always
 * succeeds). Key and value are copied (they may be views into module memory).
 */
export function setSharedData(vmId: string, key: string | Uint8Array, value: Uint8Array, cas: number): number {
  const k = keyView(key);
  return sharedStore(vmId).set(k, 0, k.byteLength, viewOf(value), 0, value.length, cas);
}

export interface QueueOwner {
  /** Called (asynchronously) when data is enqueued: proxy_on_queue_ready on the owner's root context. */
  notify(token: number): void;
}

interface Queue {
  token: number;
  owner: QueueOwner;
  items: Uint8Array[];
}

const queuesByName = new Map<string, Queue>();
const queuesByToken = new Map<number, Queue>();
let nextToken = 1;

const queueKey = (vmId: string, name: string): string => `${vmId}\0${name}`;

/** Registers (or re-registers, taking ownership) a queue; returns its token. */
export function registerQueue(vmId: string, name: string, owner: QueueOwner): number {
  const key = queueKey(vmId, name);
  const existing = queuesByName.get(key);
  if (existing) {
    existing.owner = owner;
    return existing.token;
  }
  const queue: Queue = { token: nextToken++, owner, items: [] };
  queuesByName.set(key, queue);
  queuesByToken.set(queue.token, queue);
  return queue.token;
}

export function resolveQueue(vmId: string, name: string): number | undefined {
  return queuesByName.get(queueKey(vmId, name))?.token;
}

export function enqueue(token: number, item: Uint8Array): number {
  const queue = queuesByToken.get(token);
  if (!queue) return Status.NOT_FOUND;
  queue.items.push(item);
  setImmediate(() => queue.owner.notify(token));
  return Status.OK;
}

export function dequeue(token: number): Uint8Array | number {
  const queue = queuesByToken.get(token);
  if (!queue) return Status.NOT_FOUND;
  return queue.items.shift() ?? Status.EMPTY;
}

/** Forgets queues owned by a closed filter so they do not keep notifying it. */
export function dropQueues(owner: QueueOwner): void {
  for (const [key, queue] of queuesByName) {
    if (queue.owner !== owner) continue;
    queuesByName.delete(key);
    queuesByToken.delete(queue.token);
  }
}
