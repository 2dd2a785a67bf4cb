// A second, independent strict relying party: Authlib (PyPI) against `hubauth demo`.
// The checks themselves live in authlib_rp.py; this file starts hubauth and runs them.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startHubauth, artifactPath, E2E_DIR } from './lib/harness.mjs';

describe('hubauth demo vs. Authlib (Python) as relying party', { timeout: 120_000 }, () => {
  let hubauth;
  before(async () => {
    hubauth = await startHubauth({ name: 'authlib-hubauth' });
  });
  after(async () => {
    await hubauth?.stop();
  });

  it('code flow with PKCE, ID-token validation, userinfo, rotation, reuse detection, introspection, revocation', () => {
    const python = path.join(E2E_DIR, '.venv', 'bin', 'python');
    const res = spawnSync(python, [path.join(E2E_DIR, 'authlib_rp.py'), hubauth.issuer, hubauth.secret], {
      encoding: 'utf8',
      timeout: 90_000,
      env: { ...process.env, PYTHONWARNINGS: 'ignore::DeprecationWarning' },
    });
    writeFileSync(artifactPath('authlib-rp.log'), `${res.stdout}\n${res.stderr}`);
    assert.equal(res.status, 0, `authlib_rp.py failed:\n${res.stdout}\n${res.stderr}`);
    assert.match(res.stdout, /authlib RP: \d+ checks passed/);
  });
});
