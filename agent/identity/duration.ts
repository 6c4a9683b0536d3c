const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "500ms", "6s", "10m", "1h", "7d", or a sum like "1h30m" → milliseconds; throws on anything else. */
export function parseDuration(text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) {
    throw new Error(`invalid duration ${JSON.stringify(text)} (examples: 30s, 10m, 1h)`);
  }
  const ms = parts.reduce((sum, [, value, unit]) => sum + Number(value) * UNITS[unit!]!, 0);
  if (ms <= 0) throw new Error(`duration ${JSON.stringify(text)} must be positive`);
  return ms;
}
