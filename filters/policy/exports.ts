// The proxy-wasm ABI 0.2.1 entry points of a policy filter (re-exported by
// filters/policy/index.ts) and what happens around a decision: 400/401 (no caller identity, a
// caller ID that is not a SPIFFE ID of an accepted trust domain, or a fingerprint refused)
// before any rule, injected values that are not HTTP field values refused, header
// stripping and injection, the normalized :path upstream, the local reply, the decision
// record (log line and filter state) and metric.
//
// Memory: the filter keeps nothing on the heap between callbacks. Every request starts by
// resetting the (stub runtime's bump) heap, so the host's buffers, decoded values and
// log text of one request reuse the same memory as the previous one.
export * from "../../runtime/lifecycle";
import {
  LOG_INFO, defineCounterNamed, getPluginConfiguration, incrementCounter, log, logs, removeRequestHeader,
  replaceRequestHeader, retLen, retPtr, sendLocalResponse, setProperty,
} from "../../runtime/abi";
import { Out, bytesEqual, isFieldValue } from "../../runtime/bytes";
import { ALLOW, DENY, decide, decidedByError, decidedRule, injected, ruleField } from "./engine";
import { PATH_OK, normLen, normPtr, normalizePath, queryLen, queryPtr } from "../../runtime/path";
import { MAX_HEADER_BYTES, beginRequest, foundLen, foundPtr, hasHeader, headerBytes, metadataRefusal, principalLen, rawPathLen, rawPathPtr, requestId } from "../../runtime/request";
import { H_DRY_RUN, H_STRIP, b, t } from "./tables";
import { parseConfig, fingerprintOff, CONFIG_DEFAULT, CONFIG_DRY_RUN } from "./config";
import { checkFingerprint, replayFull } from "./fingerprint";
import { CALLER_FOREIGN, CALLER_INVALID, checkCaller } from "./principal";
import { MAX_PATH_BYTES } from "../../compiler/frontend/request-limits";


const CONTINUE: i32 = 0;
const PAUSE: i32 = 1;

let dryRun = false;
let fingerprints = true;
let metricAllow: i32 = -1;
let metricDeny: i32 = -1;
let metricUnauthenticated: i32 = -1;
let metricReplayFull: i32 = -1;

/** Reads the plugin configuration; anything but a valid one rejects the filter (false). */
export function proxy_on_configure(rootId: i32, size: i32): bool {
  let mode = CONFIG_DEFAULT;
  let off = false;
  if (size > 0) {
    if (!getPluginConfiguration(size)) return false;
    mode = parseConfig(retPtr, retLen);
    if (mode < 0) return false;
    off = fingerprintOff;
  }
  dryRun = mode == CONFIG_DEFAULT ? t(H_DRY_RUN) != 0 : mode == CONFIG_DRY_RUN;
  fingerprints = !off;
  if (metricAllow < 0) {
    metricAllow = defineCounterNamed("palisade_decisions.decision=allow");
    metricDeny = defineCounterNamed("palisade_decisions.decision=deny");
    metricUnauthenticated = defineCounterNamed("palisade_decisions.decision=unauthenticated");
    metricReplayFull = defineCounterNamed("palisade_fingerprint_replay_full");
  }
  heap.reset();
  return true;
}

export function proxy_on_request_headers(contextId: i32, headerCount: i32, endOfStream: i32): i32 {
  heap.reset();
  if (!beginRequest()) return finish(DENY_BAD_REQUEST, headerBytes > MAX_HEADER_BYTES ? "headers_too_large" : "bad_headers", -1);
  // The path first (docs/policy.md, "Decisions"): a request Envoy itself would refuse
  // is a 400 whoever sends it. Normalizing takes memory in proportion to the path, and the
  // VM keeps what a request grew: bounded (docs/host.md, "Limits").
  if (rawPathLen > MAX_PATH_BYTES) return finish(DENY_BAD_REQUEST, "path_too_long", -1);
  if (rawPathLen < 0 || normalizePath(rawPathPtr, rawPathLen) != PATH_OK) return finish(DENY_BAD_REQUEST, "bad_path", -1);
  if (principalLen == 0) return finish(UNAUTHENTICATED, "no_identity", -1);
  const caller = checkCaller();
  if (caller == CALLER_INVALID) return finish(UNAUTHENTICATED, "invalid_principal", -1);
  if (caller == CALLER_FOREIGN) return finish(UNAUTHENTICATED, "foreign_trust_domain", -1);
  // Fingerprints (filters/policy/fingerprint.ts): missing or failing is unauthenticated, as a
  // fingerprint jwt_authn refused would be.
  if (fingerprints) {
    const refused = checkFingerprint();
    if (replayFull) incrementCounter(metricReplayFull);
    if (refused.length > 0) return finish(UNAUTHENTICATED, refused, -1);
  }
  const d = decide();
  // Claims the rules needed but the filter could not read (nested too deep, too large).
  const unreadable = metadataRefusal();
  if (unreadable.length > 0) return finish(UNAUTHENTICATED, unreadable, -1);
  if (d == ALLOW) {
    // A value that is not an HTTP field value (CR, LF, NUL, other controls: a percent-decoded
    // query parameter or a claim can hold them) would smuggle a header or be cut by the proxy:
    // never set, never forwarded without it.
    if (!injectionsAreFieldValues(decidedRule)) return finish(DENIED, "inject_invalid_value", decidedRule);
    return finish(ALLOWED, "allow_rule", decidedRule);
  }
  if (d == DENY) return finish(DENIED, decidedByError ? "deny_rule_when_error" : "deny_rule", decidedRule);
  return finish(DENIED, "no_allow_rule", -1);
}

// No other callback is exported: Envoy skips a callback the module does not export
// (Continue for the body, trailer and response ones, true for on_done), so a no-op export
// would only cost a VM entry per callback per request.

// Outcomes: the decision name, its HTTP status, the local reply's error code.
const ALLOWED = 0;
const DENIED = 1;
const DENY_BAD_REQUEST = 2;
const UNAUTHENTICATED = 3;

function finish(outcome: i32, reason: string, rule: i32): i32 {
  const status = outcome == ALLOWED ? 200 : outcome == DENIED ? 403 : outcome == DENY_BAD_REQUEST ? 400 : 401;
  const decision = outcome == ALLOWED ? "allow" : outcome == UNAUTHENTICATED ? "unauthenticated" : "deny";
  recordDecision(decision, status, rule, reason);
  incrementCounter(outcome == ALLOWED ? metricAllow : outcome == UNAUTHENTICATED ? metricUnauthenticated : metricDeny);
  if (outcome == ALLOWED || dryRun) {
    if (outcome != DENY_BAD_REQUEST) forwardNormalizedPath();
    stripInjectable();
    if (outcome == ALLOWED) setInjections(rule);
    return CONTINUE;
  }
  reply(status, outcome == UNAUTHENTICATED ? "unauthenticated" : outcome == DENIED ? "forbidden" : "bad_request");
  return PAUSE;
}

/** The decision line's prefix; what follows it is the record. */
const DECISION_LINE = "palisade.decision ";
/** The filter-state key of the record ("palisade.decision"): Envoy keeps it as `wasm.palisade.decision` for the access log. */
const DECISION_KEY_LEN = 17;
const DECISION_KEY = memory.data<u8>([112, 97, 108, 105, 115, 97, 100, 101, 46, 100, 101, 99, 105, 115, 105, 111, 110]);

/**
 * The record `{"decision":…,"status":…,"rule":…,"mode":…,"reason":…}`, formatted once: kept
 * as filter state for Envoy's access log (the audit log), and logged at info as
 * `palisade.decision {record}` unless the host logs less.
 */
function recordDecision(decision: string, status: i32, rule: i32, reason: string): void {
  const o = new Out(160).ascii(DECISION_LINE).ascii('{"decision":"').ascii(decision).ascii('","status":').int(status).ascii(',"rule":');
  if (rule < 0) o.ascii("null");
  else o.byte(34).bytes(b(ruleField(rule, 1)), ruleField(rule, 2)).byte(34);
  o.ascii(',"mode":"').ascii(dryRun ? "dry-run" : "enforce").ascii('","reason":"').ascii(reason).ascii('"}');
  const prefix = DECISION_LINE.length;
  setProperty(DECISION_KEY, DECISION_KEY_LEN, o.ptr + prefix, o.len - prefix);
  if (logs(LOG_INFO)) log(LOG_INFO, o.ptr, o.len);
}

/**
 * The upstream sees the path the decision was made on (as behind Envoy with
 * normalize_path and merge_slashes): `:path` is rewritten when normalization changed it.
 */
function forwardNormalizedPath(): void {
  const pathPart = queryLen >= 0 ? rawPathLen - queryLen - 1 : rawPathLen;
  if (bytesEqual(normPtr, normLen, rawPathPtr, pathPart)) return;
  const o = new Out(normLen + rawPathLen + 1).bytes(normPtr, normLen);
  if (queryLen >= 0) o.byte(63).bytes(queryPtr, queryLen);
  replaceRequestHeader(PATH_HEADER, 5, o.ptr, o.len);
}

const PATH_HEADER = memory.data<u8>([58, 112, 97, 116, 104]); // ":path"

/** Removes every header a rule may inject (present ones only), whatever the decision. */
function stripInjectable(): void {
  const list = t(H_STRIP);
  for (let i = 0, n = t(list); i < n; i++) {
    const p = b(t(list + 1 + i * 2));
    const len = t(list + 2 + i * 2);
    if (hasHeader(p, len)) removeRequestHeader(p, len);
  }
}

/** Are all of the applying rule's injected values (evaluated by decide()) RFC 9110 field values? */
function injectionsAreFieldValues(rule: i32): bool {
  const list = ruleField(rule, 3);
  if (list < 0) return true;
  for (let i = 0, n = t(list); i < n; i++) {
    const at = injected + (<usize>i << 3);
    if (!isFieldValue(<usize>load<u32>(at), load<i32>(at + 4))) return false;
  }
  return true;
}

function setInjections(rule: i32): void {
  const list = ruleField(rule, 3);
  if (list < 0) return;
  for (let i = 0, n = t(list); i < n; i++) {
    const at = injected + (<usize>i << 3);
    replaceRequestHeader(b(t(list + 1 + i * 3)), t(list + 2 + i * 3), <usize>load<u32>(at), load<i32>(at + 4));
  }
}

/** Longest request id echoed in a local reply (a UUID has 36 bytes): escaping takes up to 6 bytes per byte. */
const MAX_REPLY_ID: i32 = 128;

/** The local reply: `{"error":code,"request_id":id}`, nothing else an attacker could use. */
function reply(status: i32, code: string): void {
  requestId();
  const id = min(foundLen, MAX_REPLY_ID);
  const body = new Out(64 + id * 6).ascii('{"error":"').ascii(code).ascii('","request_id":"').jsonEscaped(foundPtr, id).ascii('"}');
  const ct = "content-type";
  const json = "application/json";
  const headers = new Out(64).u32le(1).u32le(ct.length).u32le(json.length).ascii(ct).byte(0).ascii(json).byte(0);
  sendLocalResponse(status, body.ptr, body.len, headers.ptr, headers.len);
}

