// The `abort` every AssemblyScript assertion and failed allocation calls, routed here by
// asc `--use abort=runtime/abort/abort` (Envoy provides no `env.abort`): one critical log
// line through proxy_log, then a trap. A trap inside a callback makes the host fail the
// request (the filter is configured fail-closed).
import { log, LOG_CRITICAL } from "./abi";

const MESSAGE = memory.data<u8>([112, 97, 108, 105, 115, 97, 100, 101, 58, 32, 102, 105, 108, 116, 101, 114, 32, 97, 98, 111, 114, 116, 101, 100]); // "palisade: filter aborted"

export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  log(LOG_CRITICAL, MESSAGE, 24);
  unreachable();
}
