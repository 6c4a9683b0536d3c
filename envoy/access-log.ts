/**
 * What `palisade envoy bootstrap --audit` asks Envoy to send to the agent's access-log
 * service, and so what the agent reads from each entry (agent/xds/als-entry.ts): one name
 * for each, shared by the bootstrap and the agent.
 */

/** The http_grpc logger's `log_name`; the agent refuses streams under any other. */
export const AUDIT_LOG_NAME = 'palisade.audit';
/** The policy filter's decision record: proxy_set_property('palisade.decision'), which Envoy keeps under this name. */
export const DECISION_STATE = 'wasm.palisade.decision';
/** Where header_to_metadata copies the fingerprint JWS before jwt_authn removes the header. */
export const FINGERPRINT_METADATA = { namespace: 'palisade', key: 'fingerprint' } as const;
/**
 * Request headers the logger sends: the verified caller's certificate (XFCC, set by Envoy),
 * the identity-context token (hashed by the agent, never stored) and the trace context.
 */
export const LOGGED_REQUEST_HEADERS = ['x-forwarded-client-cert', 'authorization', 'traceparent'] as const;
