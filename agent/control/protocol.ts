/**
 * The agent ↔ control plane protocol (docs/control.md, "Stream protocol"), shared by the
 * agent's subscriber and the control plane's server. HTTPS with the agent's SVID as client
 * certificate:
 *
 * - `GET /v1/agent/stream` (header AGENT_INSTANCE_HEADER): newline-delimited JSON, one
 *   `StreamMessage` per line, kept open. The first message is the current state; a new one
 *   follows every change, and a ping every PING_INTERVAL_MS so a dead peer is noticed.
 * - `POST /v1/agent/reports`: one `Report` per version the agent applied or refused.
 */
export const STREAM_PATH = '/v1/agent/stream';
export const REPORTS_PATH = '/v1/agent/reports';
/** Which process of a service is talking: several agents may hold the same SPIFFE ID. */
export const AGENT_INSTANCE_HEADER = 'x-palisade-agent-instance';
export const PING_INTERVAL_MS = 10_000;
/** The control plane's SPIFFE ID when the agent is not told another (`--control-id`). */
export const defaultControlId = (trustDomain: string) => `spiffe://${trustDomain}/palisade/control`;

/** The compiled filter for the agent's service, pinned by the sha256 of `wasm` (base64). */
export interface PushedFilter {
  policy: string;
  version: number;
  sha256: string;
  wasm: string;
}

export type StreamMessage =
  /** `filter: null`: no policy protects this service (yet). */
  | { type: 'filter'; filter: PushedFilter | null }
  | { type: 'ping' };

export interface Report {
  policy: string;
  version: number;
  sha256: string;
  status: 'applied' | 'refused';
  /** Why a version was refused. */
  reason?: string;
}
