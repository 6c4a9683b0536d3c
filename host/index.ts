/** The strict proxy-wasm host: see docs/host.md. */
export { loadFilter, Filter, FilterLoadError } from './filter.ts';
export type { LoadOptions, FilterRequest, HandleOptions, Outcome, UpstreamResponse, LogLine, Cluster, Pair, PropertyValue } from './filter.ts';
export type { HttpCallRequest, HttpCallResponse } from './host-context.ts';
export { decodePairs, encodePairs } from './pairs.ts';
