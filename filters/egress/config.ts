// The egress filter's plugin configuration, exactly as envoy/bootstrap.ts writes it:
//   {"signer_cluster":"palisade_signer","signer_authority":"127.0.0.1:15090",
//    "signer_path":"/v1/fingerprint","targets":{"card":"spiffe://td/ns/x/sa/card"},
//    "signer_timeout_ms":1000}
// `targets` maps a Host name (the outbound route's domain) to the SPIFFE ID the target
// presents: the fingerprint's `aud`. `signer_timeout_ms` is optional (1–60000, default
// 1000). Unknown members, wrong types or duplicates refuse the whole configuration.
//
// It lives in static memory: the heap is reset for every request, the configuration is not.
import { bytesEqual } from "../../runtime/bytes";
import { intValue, jsonBegin, jsonEat, jsonEnd, jsonInt, jsonString, strIs, strLen, strPtr } from "../../runtime/json";

const CAPACITY: i32 = 65536;
const MAX_TARGETS: i32 = 1024;
const CONFIG: usize = memory.data(CAPACITY);
/** Per target: name pointer, name length, SPIFFE ID pointer, SPIFFE ID length (i32 each). */
const TARGETS: usize = memory.data(MAX_TARGETS << 4);
const DEFAULT_TIMEOUT_MS: u32 = 1000;

export let clusterPtr: usize = 0;
export let clusterLen: i32 = 0;
export let authorityPtr: usize = 0;
export let authorityLen: i32 = 0;
export let pathPtr: usize = 0;
export let pathLen: i32 = 0;
export let timeoutMs: u32 = DEFAULT_TIMEOUT_MS;
let targetCount: i32 = 0;

/** Result of findTarget(). */
export let audPtr: usize = 0;
export let audLen: i32 = 0;

// Parsed values (pointers into the host's copy) before they are committed.
let cluster: usize = 0, clusterN: i32 = -1;
let authority: usize = 0, authorityN: i32 = -1;
let path: usize = 0, pathN: i32 = -1;
let timeout: i64 = -1;
let targets: usize = 0, targetsN: i32 = -1;

/**
 * Reads a configuration from the host's buffer; on success it replaces the current one
 * (copied into static memory), otherwise the current one stays and false is returned.
 */
export function loadConfig(ptr: usize, len: i32): bool {
  if (len > CAPACITY || !parse(ptr, len)) return false;
  memory.copy(CONFIG, ptr, len);
  source = ptr;
  clusterPtr = moved(cluster); clusterLen = clusterN;
  authorityPtr = moved(authority); authorityLen = authorityN;
  pathPtr = moved(path); pathLen = pathN;
  timeoutMs = timeout < 0 ? DEFAULT_TIMEOUT_MS : <u32>timeout;
  for (let i = 0; i < targetsN; i++) {
    const from = targets + (<usize>i << 4);
    const to = TARGETS + (<usize>i << 4);
    store<i32>(to, <i32>moved(<usize>load<i32>(from)));
    store<i32>(to + 4, load<i32>(from + 4));
    store<i32>(to + 8, <i32>moved(<usize>load<i32>(from + 8)));
    store<i32>(to + 12, load<i32>(from + 12));
  }
  targetCount = targetsN;
  return true;
}

let source: usize = 0;

/** Where a pointer into the host's copy points in the committed one. */
function moved(p: usize): usize {
  return p - source + CONFIG;
}

function parse(ptr: usize, len: i32): bool {
  clusterN = authorityN = pathN = targetsN = -1;
  timeout = -1;
  jsonBegin(ptr, len);
  if (!jsonEat(123)) return false; // {
  do {
    if (!jsonString() || !jsonEat(58)) return false;
    if (strIs("signer_cluster") && clusterN < 0) {
      if (!jsonString() || strLen == 0) return false;
      cluster = strPtr; clusterN = strLen;
    } else if (strIs("signer_authority") && authorityN < 0) {
      if (!jsonString() || strLen == 0) return false;
      authority = strPtr; authorityN = strLen;
    } else if (strIs("signer_path") && pathN < 0) {
      if (!jsonString() || strLen == 0 || load<u8>(strPtr) != 47) return false; // starts with '/'
      path = strPtr; pathN = strLen;
    } else if (strIs("signer_timeout_ms") && timeout < 0) {
      if (!jsonInt() || intValue < 1 || intValue > 60000) return false;
      timeout = intValue;
    } else if (strIs("targets") && targetsN < 0) {
      if (!parseTargets()) return false;
    } else return false;
  } while (jsonEat(44)); // ,
  return jsonEat(125) && jsonEnd() && clusterN > 0 && authorityN > 0 && pathN > 0 && targetsN >= 0;
}

// {"host": "spiffe://…", …}: names unique (case-insensitively, as Envoy matches domains).
function parseTargets(): bool {
  targets = heap.alloc(<usize>MAX_TARGETS << 4);
  targetsN = 0;
  if (!jsonEat(123)) return false;
  if (jsonEat(125)) return true;
  do {
    if (targetsN == MAX_TARGETS || !jsonString() || strLen == 0) return false;
    const name = strPtr;
    const nameLen = strLen;
    if (lookup(targets, targetsN, name, nameLen) >= 0) return false;
    if (!jsonEat(58) || !jsonString() || strLen <= 9 || !isSpiffe(strPtr)) return false;
    const at = targets + (<usize>(targetsN++) << 4);
    store<i32>(at, <i32>name);
    store<i32>(at + 4, nameLen);
    store<i32>(at + 8, <i32>strPtr);
    store<i32>(at + 12, strLen);
  } while (jsonEat(44));
  return jsonEat(125);
}

const SPIFFE = memory.data<u8>([115, 112, 105, 102, 102, 101, 58, 47, 47]); // "spiffe://"

function isSpiffe(p: usize): bool {
  return bytesEqual(p, 9, SPIFFE, 9);
}

/** The SPIFFE ID for a Host name (case-insensitive); sets audPtr/audLen. */
export function findTarget(hostPtr: usize, hostLen: i32): bool {
  const i = lookup(TARGETS, targetCount, hostPtr, hostLen);
  if (i < 0) return false;
  audPtr = <usize>load<i32>(TARGETS + (<usize>i << 4) + 8);
  audLen = load<i32>(TARGETS + (<usize>i << 4) + 12);
  return true;
}

function lookup(table: usize, n: i32, name: usize, nameLen: i32): i32 {
  for (let i = 0; i < n; i++) {
    const at = table + (<usize>i << 4);
    if (sameHost(<usize>load<i32>(at), load<i32>(at + 4), name, nameLen)) return i;
  }
  return -1;
}

function sameHost(a: usize, alen: i32, b: usize, blen: i32): bool {
  if (alen != blen) return false;
  for (let i = 0; i < alen; i++) if (lower(load<u8>(a + i)) != lower(load<u8>(b + i))) return false;
  return true;
}

function lower(c: u8): u8 {
  return c >= 65 && c <= 90 ? c + 32 : c;
}
