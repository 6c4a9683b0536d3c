/**
 * Process-wide state that Envoy keeps per VM id across all filter instances (its global
 * shared-data and shared-queue stores, proxy-wasm-cpp-host src/shared_data.cc and
 * src/shared_queue.cc): data set by one instance is seen by every instance with the same
 * VM id, with compare-and-swap versions.
 */
import { Status } from './abi.ts';
import { encodeUtf8 } from './pairs.ts';
import { SharedData } from './shared-data.ts';

const data = new Map<string, SharedData>();
let nextCas = 1;

function casValue(): number {
  const cas = nextCas;
  nextCas = (nextCas + 1) >>> 0 || 1; // 0 means "no CAS", never hand it out
  return cas;
}

const bytesOf = (key: string | Uint8Array): Uint8Array => (typeof key === 'string' ? encodeUtf8(key) : key);

/** The value (a view: copy it before the next set) and version stored for `key` (UTF-8 bytes or a string). */
export function getSharedData(vmId: string, key: string | Uint8Array): { value: Uint8Array; cas: number } | undefined {
  const store = data.get(vmId);
  const e = store ? store.find(bytesOf(key)) : -1;
  return e < 0 ? undefined : { value: store!.value(e), cas: store!.cas[e] };
}

/**
 * `cas` 0: unconditional. Otherwise it must equal the stored version (a new key always
 * succeeds). Key and value are copied (they may be views into module memory).
 */
export function setSharedData(vmId: string, key: string | Uint8Array, value: Uint8Array, cas: number): number {
  const k = bytesOf(key);
  let store = data.get(vmId);
  if (!store) data.set(vmId, (store = new SharedData()));
  const e = store.find(k);
  if (e >= 0 && cas !== 0 && cas !== store.cas[e]) return Status.CAS_MISMATCH;
  store.set(k, value, casValue(), e);
  return Status.OK;
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
