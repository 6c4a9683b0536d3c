/** A request the control plane refuses: the HTTP status and the stable code of the JSON error. */
export class ControlError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Extra members of the error object, e.g. a policy's diagnostics. */
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}
