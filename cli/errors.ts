/**
 * An error meant for the person at the terminal: printed as its message alone, never
 * with a stack trace, and mapped to a process exit code (2 = bad input, 1 = failure).
 */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}
