/** One finding of the Envoy config validator (validate.ts, pgv.ts, semantics.ts). */
export interface Issue {
  /** JSON path of the offending value, e.g. `static_resources.listeners[0].name`. */
  path: string;
  message: string;
  severity: 'error' | 'warning';
}
