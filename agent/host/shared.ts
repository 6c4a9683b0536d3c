/**
 * Process-wide state that Envoy keeps per VM id across all filter instances (its global
 * shared-data and shared-queue stores, proxy-wasm-cpp-host src/shared_data.cc and
 * src/shared_queue.cc): data set by one instance is seen by every instance with the same
 * VM id, with compare-and-swap versions.
 */
import { Status } from './abi.ts';

interface Entry {
  value: Uint8Array;
  cas: number;
}

const data = new Map<string, Map<string, Entry>>();
let nextCas = 1;

function casValue(): number {
  const cas = nextCas;
  nextCas = (nextCas + 1) >>> 0 || 1; // 0 means "no CAS", never hand it out
  return cas;
}

export function getSharedData(vmId: string, key: string): Entry | undefined {
  return data.get(vmId)?.get(key);
}

/** `cas` 0: unconditional. Otherwise it must equal the stored version (a new key always succeeds). */
export function setSharedData(vmId: string, key: string, value: Uint8Array, cas: number): number {
  let store = data.get(vmId);
  if (!store) data.set(vmId, (store = new Map()));
  const entry = store.get(key);
  if (entry && cas !== 0 && cas !== entry.cas) return Status.CAS_MISMATCH;
  store.set(key, { value, cas: casValue() });
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
