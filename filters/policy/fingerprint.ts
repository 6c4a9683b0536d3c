// Enforcing the fingerprint claims Envoy's jwt_authn verified (`payload_in_metadata:
// fingerprint`). jwt_authn checks the signature, `exp`/`nbf` and the key; it cannot know the
// connection, the service or the request, so the filter checks what binds the token to them:
//   sub == the peer certificate's URI SAN, iss == sub, aud == the policy's service,
//   htm == :method, htu == :path as the filter receives it without the query (what the
//   caller signed: before the filter's own normalization; behind Envoy's normalize_path the
//   caller must therefore sign normalized paths, as our sidecar and egress filter do),
//   iat not in the future beyond SKEW nor older than MAX_TTL + SKEW, exp not past (SKEW),
//   exp - iat <= MAX_TTL, and jti never seen before (replay store below).
//
// Replay store, in proxy-wasm shared data (per VM id, shared by every worker's filter
// instance and kept across policy updates since ECDS keeps the vm_id). Envoy's shared data
// has no delete and no TTL, so memory is bounded by construction: SLOTS keys
// `palisade.jti.<n>`, n = hash(jti) mod SLOTS, each holding at most ENTRIES entries of
// (u64 jti hash, u32 expiry second, u32 0) = 16 bytes: 16384 × 256 B = 4 MiB at most. An
// entry is live until exp + SKEW (after which jwt_authn refuses the token anyway) and is
// overwritten once expired. A slot full of live entries refuses the request (fail closed,
// counted in `palisade_fingerprint_replay_full`): with entries living ≤ MAX_TTL + 2 SKEW =
// 40 s, about 2,000 requests/s per VM id keep that below 1e-4 of requests.
// Updates are compare-and-swap; only a slot's very first write (no version to compare yet)
// is unconditional.
import { CAS_MISMATCH, OK, getSharedData, nowSeconds, retLen, retPtr, setSharedData, sharedCas } from "../../runtime/abi";
import { bytesEqual, writeDecimal } from "../../runtime/bytes";
import {
  PB_NUMBER, PB_STRING, entryKeyLen, entryKeyPtr, entryValLen, entryValPtr, nextEntry, valLen, valNum, valPtr, valueKind,
} from "../../runtime/pb";
import { queryLen } from "../../runtime/path";
import { fingerprintClaims, metadataRefusal, methodLen, methodPtr, principalLen, principalPtr, rawPathLen, rawPathPtr } from "../../runtime/request";
import { H_SERVICE, H_SERVICE_LEN, b, t } from "./tables";
import { FINGERPRINT_SKEW_SECONDS, FINGERPRINT_TTL_SECONDS } from "../../spiffe/fingerprint-limits";

const SKEW: f64 = <f64>FINGERPRINT_SKEW_SECONDS; // seconds
const MAX_TTL: f64 = <f64>FINGERPRINT_TTL_SECONDS; // seconds
const SLOTS: u64 = 16384;
const ENTRIES: i32 = 16;
const ENTRY: i32 = 16;
const CAS_ATTEMPTS = 8;

// Claims by index: strings iss, sub, aud, htm, htu, jti; numbers iat, exp.
const ISS = 0;
const SUB = 1;
const AUD = 2;
const HTM = 3;
const HTU = 4;
const JTI = 5;
const IAT = 6;
const EXP = 7;
const CLAIMS = 8;
const strPtr = memory.data(6 * 4);
const strLen = memory.data(6 * 4);
const seen = memory.data(CLAIMS);
let iat: f64 = 0;
let exp: f64 = 0;
const slotBuf = memory.data(ENTRIES * ENTRY);

/** Set when a slot was full of live entries (the caller counts it). */
export let replayFull = false;

/** Why the request's fingerprint is refused (a decision `reason`), or "" when it is accepted. */
export function checkFingerprint(): string {
  replayFull = false;
  const found = fingerprintClaims();
  if (found == 0) return "fingerprint_missing";
  if (found < 0) {
    const refused = metadataRefusal(); // the metadata as a whole could not be read
    return refused.length > 0 ? refused : "fingerprint_malformed";
  }
  if (!readClaims(valPtr, valLen)) return "fingerprint_malformed";
  if (!claimIs(SUB, principalPtr, principalLen)) return "fingerprint_sub";
  if (!claimIs(ISS, claimPtr(SUB), claimLen(SUB))) return "fingerprint_iss";
  if (!claimIs(AUD, b(t(H_SERVICE)), t(H_SERVICE_LEN))) return "fingerprint_aud";
  if (!claimIs(HTM, methodPtr, methodLen)) return "fingerprint_htm";
  if (!claimIs(HTU, rawPathPtr, queryLen >= 0 ? rawPathLen - queryLen - 1 : rawPathLen)) return "fingerprint_htu";
  const now = nowSeconds();
  if (exp <= now - SKEW) return "fingerprint_exp";
  if (iat > now + SKEW || iat < now - MAX_TTL - SKEW) return "fingerprint_iat";
  if (exp - iat > MAX_TTL) return "fingerprint_lifetime";
  const verdict = admit(fnv1a64(claimPtr(JTI), claimLen(JTI)), <u32>Math.ceil(exp + SKEW), <u32>now);
  if (verdict == REPLAYED) return "fingerprint_replay";
  if (verdict == FULL) { replayFull = true; return "fingerprint_replay_full"; }
  return "";
}

function claimPtr(i: i32): usize { return <usize>load<u32>(strPtr + (<usize>i << 2)); }
function claimLen(i: i32): i32 { return load<i32>(strLen + (<usize>i << 2)); }
function claimIs(i: i32, p: usize, len: i32): bool { return bytesEqual(claimPtr(i), claimLen(i), p, len); }

/** One pass over the claims Struct (the last duplicate wins); false unless all eight claims have their type. */
function readClaims(ptr: usize, len: i32): bool {
  memory.fill(seen, 0, CLAIMS);
  let p = ptr;
  const end = ptr + len;
  while (p < end) {
    p = nextEntry(p, end);
    if (!p) return false;
    const which = claimIndex(entryKeyPtr, entryKeyLen);
    if (which < 0) continue; // other claims (ath, nbf, …) are jwt_authn's or nobody's business here
    const kind = valueKind(entryValPtr, entryValLen);
    if (which < IAT) {
      if (kind != PB_STRING) return false;
      store<u32>(strPtr + (<usize>which << 2), <u32>valPtr);
      store<i32>(strLen + (<usize>which << 2), valLen);
    } else {
      if (kind != PB_NUMBER || !isFinite(valNum)) return false;
      if (which == IAT) iat = valNum;
      else exp = valNum;
    }
    store<u8>(seen + which, 1);
  }
  for (let i = 0; i < CLAIMS; i++) if (load<u8>(seen + i) == 0) return false;
  return true;
}

/** Every claim name is three ASCII letters: compared as one little-endian number. */
function claimIndex(p: usize, len: i32): i32 {
  if (len != 3) return -1;
  const k = <u32>load<u8>(p) | (<u32>load<u8>(p + 1) << 8) | (<u32>load<u8>(p + 2) << 16);
  if (k == N_ISS) return ISS;
  if (k == N_SUB) return SUB;
  if (k == N_AUD) return AUD;
  if (k == N_HTM) return HTM;
  if (k == N_HTU) return HTU;
  if (k == N_JTI) return JTI;
  if (k == N_IAT) return IAT;
  if (k == N_EXP) return EXP;
  return -1;
}

// Computed once at start: asc does not fold charCodeAt of a literal, and claimIndex runs
// for every claim of every request.
function name3(s: string): u32 {
  return <u32>s.charCodeAt(0) | (<u32>s.charCodeAt(1) << 8) | (<u32>s.charCodeAt(2) << 16);
}
const N_ISS = name3("iss");
const N_SUB = name3("sub");
const N_AUD = name3("aud");
const N_HTM = name3("htm");
const N_HTU = name3("htu");
const N_JTI = name3("jti");
const N_IAT = name3("iat");
const N_EXP = name3("exp");

function fnv1a64(ptr: usize, len: i32): u64 {
  let h: u64 = 0xcbf29ce484222325;
  for (let i = 0; i < len; i++) {
    h ^= <u64>load<u8>(ptr + i);
    h *= 0x100000001b3;
  }
  return h;
}

const ADMITTED = 0;
const REPLAYED = 1;
const FULL = 2;

// The slot's key, `palisade.jti.<n>`: the prefix is static, the number (< SLOTS, at most
// five digits) is written after it per request.
const KEY = memory.data<u8>([112, 97, 108, 105, 115, 97, 100, 101, 46, 106, 116, 105, 46, 0, 0, 0, 0, 0]); // "palisade.jti."
const KEY_PREFIX = 13;

/** Records jti hash `h` until `expiry` in its slot: ADMITTED, REPLAYED (a live entry has it), or FULL. */
function admit(h: u64, expiry: u32, now: u32): i32 {
  const keyLen = KEY_PREFIX + writeDecimal(KEY + KEY_PREFIX, <u32>((h ^ (h >> 32)) % SLOTS));
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    let n = 0;
    let cas: u32 = 0; // no value yet: the first write cannot compare
    if (getSharedData(KEY, keyLen)) {
      n = min(retLen / ENTRY, ENTRIES);
      cas = sharedCas;
      memory.copy(slotBuf, retPtr, <usize>(n * ENTRY));
    }
    let free = -1;
    for (let i = 0; i < n; i++) {
      const e = slotBuf + <usize>(i * ENTRY);
      if (load<u32>(e + 8) <= now) { if (free < 0) free = i; continue; }
      if (load<u64>(e) == h) return REPLAYED;
    }
    if (free < 0) {
      if (n == ENTRIES) return FULL;
      free = n++;
    }
    const e = slotBuf + <usize>(free * ENTRY);
    store<u64>(e, h);
    store<u32>(e + 8, expiry);
    store<u32>(e + 12, 0);
    const status = setSharedData(KEY, keyLen, slotBuf, n * ENTRY, cas);
    if (status == OK) return ADMITTED;
    if (status != CAS_MISMATCH) return FULL; // the host refuses to store: fail closed
  }
  return FULL; // endless contention on one slot: fail closed rather than admit unrecorded
}
