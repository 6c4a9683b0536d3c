/** The slice of autocannon's API the sidecar tests and benchmark use (it ships no types). */
declare module 'autocannon' {
  export interface Histogram {
    average: number;
    mean: number;
    p50: number;
    p90: number;
    p99: number;
    max: number;
  }
  export interface Result {
    requests: Histogram & { total: number; sent: number };
    latency: Histogram;
    totalCompletedRequests: number;
    errors: number;
    timeouts: number;
    non2xx: number;
    duration: number;
  }
  export interface RequestSpec {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    setupRequest?: (req: { method: string; path: string; headers: Record<string, string> }) => { method: string; path: string; headers: Record<string, string> };
  }
  export interface Options {
    url: string;
    connections?: number;
    duration?: number;
    amount?: number;
    pipelining?: number;
    headers?: Record<string, string>;
    requests?: RequestSpec[];
    tlsOptions?: Record<string, unknown>;
  }
  function autocannon(opts: Options): Promise<Result>;
  export default autocannon;
}
