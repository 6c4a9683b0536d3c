/** `npm start` (`palisade demo`) end to end: real CA, agents, sidecars and compiled policies. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';

const BIN = new URL('../../bin/palisade.js', import.meta.url).pathname;

test('the demo runs every scenario as described and stops cleanly', async () => {
  const child = spawn(process.execPath, [BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.is(code, 0, stderr);
  assert.match(stdout, '10 of 10 scenarios behaved as expected');
  for (const expected of ['rule list-cards', 'rule pii-needs-scope-and-consent', '[no client certificate]', '[fingerprint_replay]', '(dry-run: not enforced)']) {
    assert.ok(stdout.includes(expected), expected);
  }
  // The story starts at the edge with real tokens from the local OpenID provider.
  assert.not.match(stdout + stderr, /oidc-provider (NOTICE|WARNING)/);
  for (const expected of [
    'edge: GET /cards (user alice) → card-service → 200 [forwarded]',
    'edge: GET /cards (user bob) → card-service → 403 [forwarded]',
    '[token unknown_key]', '[token expired]', '[token bad_aud]',
    'rule card-service-reads-balances-for-edge-users',
    '"on_behalf_of":"alice","via":"card-service ← frontend"',
  ]) {
    assert.ok(stdout.includes(expected), expected);
  }
  // The audit logs stay behind and verify with the command the demo prints.
  assert.match(stdout, /card-service: verified 7 entries, \d+ checkpoints/);
  const [, logs, bundle] = /palisade audit verify (\S+)\/<service> --bundle (\S+)/.exec(stdout)!;
  try {
    const verify = spawnSync(process.execPath, [BIN, 'audit', 'verify', `${logs}/card-service`, '--bundle', bundle!], { encoding: 'utf8' });
    assert.is(verify.status, 0, verify.stderr);
    assert.match(verify.stdout, /^verified 7 entries, \d+ checkpoints\n$/);
  } finally {
    rmSync(logs!, { recursive: true, force: true });
  }
});

test.run();
