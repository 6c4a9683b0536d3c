// Fixed entry point of the egress fingerprint filter (Envoy's outbound listener, see
// docs/egress.md). For every request it asks the local agent, with proxy_http_call to the
// signer cluster, for a fingerprint bound to the target's SPIFFE ID (from the Host), the
// method, the path and the bearer token; it holds the request until the answer comes,
// then forwards it with `x-palisade-fingerprint`. No fingerprint, no request: whatever
// goes wrong with the agent (refused call, error status, timeout, malformed answer) ends
// the request with a 503 local reply.
export * from "../../runtime/lifecycle";
import "../../runtime/abort"; // asc --use abort=runtime/abort/abort needs the file in the program
import {
  LOG_INFO, defineCounterNamed, getPluginConfiguration, incrementCounter, log, replaceRequestHeader, retLen, retPtr, sendLocalResponse,
} from "../../runtime/abi";
import { Out, bytesEqual, bytesIndexOf } from "../../runtime/bytes";
import {
  answerLen, answerPtr, awaitCall, callResponseBody, callResponseHeader, callToken, caller, canAwait, continueRequest, forget, httpCall,
  isWaiting, setEffectiveContext, takeCaller,
} from "../../runtime/http-call";
import { jsonBegin, jsonEat, jsonEnd, jsonInt, jsonString, strIs, strLen, strPtr } from "../../runtime/json";
import { beginRequest, foundLen, foundPtr, header, hostLen, hostPtr, methodLen, methodPtr, rawPathLen, rawPathPtr, requestId } from "../../runtime/request";
import {
  audLen, audPtr, authorityLen, authorityPtr, clusterLen, clusterPtr, findTarget, loadConfig, pathLen, pathPtr, timeoutMs,
} from "./config";

const CONTINUE: i32 = 0;
const PAUSE: i32 = 1; // headers: StopIteration; body: StopIterationAndBuffer
const LOG_WARN: i32 = 3;
/** Real fingerprints are about 600 bytes (spiffe/fingerprint.ts MAX_FINGERPRINT_BYTES). */
const MAX_TOKEN: i32 = 4096;
const MAX_ANSWER: i32 = 8192;

const FINGERPRINT = memory.data<u8>([120, 45, 112, 97, 108, 105, 115, 97, 100, 101, 45, 102, 105, 110, 103, 101, 114, 112, 114, 105, 110, 116]); // "x-palisade-fingerprint"
const AUTHORIZATION = memory.data<u8>([97, 117, 116, 104, 111, 114, 105, 122, 97, 116, 105, 111, 110]); // "authorization"
const BEARER = memory.data<u8>([66, 101, 97, 114, 101, 114, 32]); // "Bearer "
const STATUS = memory.data<u8>([58, 115, 116, 97, 116, 117, 115]); // ":status"
const STATUS_200 = memory.data<u8>([50, 48, 48]); // "200"

let metricSigned: i32 = -1;
let metricFailed: i32 = -1;

/** The configuration is required: without the signer and the targets nothing can be signed. */
export function proxy_on_configure(rootId: i32, size: i32): bool {
  const ok = size > 0 && getPluginConfiguration(size) && loadConfig(retPtr, retLen);
  if (metricSigned < 0) {
    metricSigned = defineCounterNamed("palisade_egress_fingerprints.result=signed");
    metricFailed = defineCounterNamed("palisade_egress_fingerprints.result=failed");
  }
  heap.reset();
  return ok;
}

export function proxy_on_request_headers(contextId: u32, headerCount: i32, endOfStream: i32): i32 {
  heap.reset();
  if (!beginRequest()) return reply(400, "bad_request", "bad_headers");
  if (!findTarget(hostPtr, hostNameLen())) return reply(404, "unknown_service", "no_target");
  const query = bytesIndexOf(rawPathPtr, rawPathLen, QUESTION, 1);
  const htuLen = query < 0 ? rawPathLen : query;
  // Only what the agent can sign byte for byte: visible ASCII, an origin-form path.
  if (!visible(methodPtr, methodLen) || htuLen <= 0 || load<u8>(rawPathPtr) != 47 || !visible(rawPathPtr, htuLen)) {
    return reply(400, "bad_request", "unsignable_request");
  }
  const body = new Out(256 + audLen + htuLen).ascii('{"aud":"').jsonEscaped(audPtr, audLen)
    .ascii('","htm":"').jsonEscaped(methodPtr, methodLen)
    .ascii('","htu":"').jsonEscaped(rawPathPtr, htuLen).byte(34);
  if (header(AUTHORIZATION, 13) && foundLen > 7 && bytesEqual(foundPtr, 7, BEARER, 7)) {
    if (!visible(foundPtr + 7, foundLen - 7)) return reply(400, "bad_request", "unsignable_request");
    body.ascii(',"identity_token":"').jsonEscaped(foundPtr + 7, foundLen - 7).byte(34);
  }
  body.byte(125);
  if (!canAwait()) return unavailable("too_many_waiting");
  const headers = signerHeaders();
  if (!httpCall(clusterPtr, clusterLen, headers.ptr, headers.len, body.ptr, body.len, timeoutMs)) return unavailable("call_refused");
  awaitCall(callToken, contextId);
  return PAUSE;
}

const QUESTION = memory.data<u8>([63]); // "?"

/** `:authority` without a `:port` (Envoy's strip_any_host_port does the same before routing). */
function hostNameLen(): i32 {
  for (let i = hostLen - 1; i >= 0; i--) {
    const c = load<u8>(hostPtr + i);
    if (c == 58) return i;
    if (c < 48 || c > 57) break;
  }
  return hostLen;
}

function visible(p: usize, n: i32): bool {
  for (let i = 0; i < n; i++) {
    const c = load<u8>(p + i);
    if (c <= 32 || c >= 127) return false;
  }
  return true;
}

/** `POST {signer_path}` to `{signer_authority}`, JSON. */
function signerHeaders(): Out {
  const o = new Out(128 + pathLen + authorityLen).u32le(4);
  o.u32le(7).u32le(4).u32le(5).u32le(pathLen).u32le(10).u32le(authorityLen).u32le(12).u32le(16);
  o.ascii(":method").byte(0).ascii("POST").byte(0);
  o.ascii(":path").byte(0).bytes(pathPtr, pathLen).byte(0);
  o.ascii(":authority").byte(0).bytes(authorityPtr, authorityLen).byte(0);
  return o.ascii("content-type").byte(0).ascii("application/json").byte(0);
}

// While the agent signs, Envoy must not pass the body or trailers on: they would carry the
// request upstream without its fingerprint. StopIterationAndBuffer keeps them.
export function proxy_on_request_body(contextId: u32, size: i32, endOfStream: i32): i32 { return isWaiting(contextId) ? PAUSE : CONTINUE; }
export function proxy_on_request_trailers(contextId: u32, count: i32): i32 { return isWaiting(contextId) ? PAUSE : CONTINUE; }
export function proxy_on_response_headers(contextId: i32, count: i32, endOfStream: i32): i32 { return CONTINUE; }
export function proxy_on_response_body(contextId: i32, size: i32, endOfStream: i32): i32 { return CONTINUE; }
export function proxy_on_response_trailers(contextId: i32, count: i32): i32 { return CONTINUE; }
export function proxy_on_log(contextId: i32): void {}
export function proxy_on_done(contextId: u32): bool { forget(contextId); return true; }
export function proxy_on_delete(contextId: u32): void { forget(contextId); }

/** The agent's answer, on the root context: `200 {"token":"<JWS>","exp":<seconds>}` or a failure. */
export function proxy_on_http_call_response(rootId: u32, token: u32, headerCount: i32, bodySize: i32, trailerCount: i32): void {
  if (!takeCaller(token) || !setEffectiveContext(caller)) return; // the stream is gone
  heap.reset();
  if (headerCount == 0) { unavailable("agent_unreachable"); return; }
  if (!callResponseHeader(STATUS, 7) || !bytesEqual(answerPtr, answerLen, STATUS_200, 3)) { unavailable("agent_status"); return; }
  if (bodySize <= 0 || bodySize > MAX_ANSWER || !callResponseBody(bodySize) || !readAnswer(answerPtr, answerLen)) {
    unavailable("agent_answer");
    return;
  }
  replaceRequestHeader(FINGERPRINT, 22, tokenPtr, tokenLen);
  incrementCounter(metricSigned);
  continueRequest();
}

let tokenPtr: usize = 0;
let tokenLen: i32 = 0;

function readAnswer(ptr: usize, len: i32): bool {
  let haveToken = false;
  let haveExp = false;
  jsonBegin(ptr, len);
  if (!jsonEat(123)) return false;
  do {
    if (!jsonString() || !jsonEat(58)) return false;
    if (strIs("token") && !haveToken) {
      if (!jsonString() || !compactJws(strPtr, strLen)) return false;
      tokenPtr = strPtr;
      tokenLen = strLen;
      haveToken = true;
    } else if (strIs("exp") && !haveExp) {
      if (!jsonInt()) return false;
      haveExp = true;
    } else return false;
  } while (jsonEat(44));
  return jsonEat(125) && jsonEnd() && haveToken && haveExp;
}

/** Three non-empty base64url parts separated by dots, at most MAX_TOKEN bytes. */
function compactJws(p: usize, n: i32): bool {
  if (n > MAX_TOKEN) return false;
  let dots = 0;
  let part = 0;
  for (let i = 0; i < n; i++) {
    const c = load<u8>(p + i);
    if (c == 46) {
      if (part == 0) return false;
      dots++;
      part = 0;
    } else if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c == 45 || c == 95) part++;
    else return false;
  }
  return dots == 2 && part > 0;
}

/** 503: the request is not sent without its fingerprint. */
function unavailable(reason: string): i32 {
  incrementCounter(metricFailed);
  return reply(503, "fingerprint_unavailable", reason);
}

/** A warning line, then the local reply `{"error":code,"request_id":id}`; the stream stays paused. */
function reply(status: i32, code: string, reason: string): i32 {
  const line = new Out(96).ascii("palisade.egress ").ascii(code).ascii(" reason=").ascii(reason);
  log(status == 503 ? LOG_WARN : LOG_INFO, line.ptr, line.len);
  beginRequest(); // after a heap reset (http_call answer): the header index is rebuilt
  requestId();
  const body = new Out(64 + foundLen * 6).ascii('{"error":"').ascii(code).ascii('","request_id":"').jsonEscaped(foundPtr, foundLen).ascii('"}');
  const ct = "content-type";
  const json = "application/json";
  const headers = new Out(64).u32le(1).u32le(ct.length).u32le(json.length).ascii(ct).byte(0).ascii(json).byte(0);
  sendLocalResponse(status, body.ptr, body.len, headers.ptr, headers.len);
  return PAUSE;
}
