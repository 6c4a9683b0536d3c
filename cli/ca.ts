import type { Command } from 'commander';

// Placeholder until the 'ca' command lands; owned by the stream that builds it.
export function register(_program: Command): void {}
