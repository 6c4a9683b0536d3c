/**
 * @peculiar/x509 pulls in tsyringe, which refuses to load without a Reflect metadata
 * polyfill; it only stores constructor metadata, so a WeakMap-backed shim is enough
 * and avoids a dependency for tests.
 */
const store = new WeakMap<object, Map<unknown, unknown>>();
const R = Reflect as unknown as Record<string, unknown>;
if (typeof R.getMetadata !== 'function') {
  const get = (key: unknown, target: object) => store.get(target)?.get(key);
  R.getMetadata = get;
  R.getOwnMetadata = get;
  R.defineMetadata = (key: unknown, value: unknown, target: object) => {
    let map = store.get(target);
    if (!map) store.set(target, (map = new Map()));
    map.set(key, value);
  };
}
export {};
