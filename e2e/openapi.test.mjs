// The admin API against its own OpenAPI document, checked by a third-party tool: Schemathesis
// (PyPI, in e2e/.venv) reads /admin/api/openapi.json from a running `hubauth demo` and sends
// generated requests (examples, coverage, fuzzing, stateful sequences) with a write token and
// then a read token made by `hubauth admin tokens create`. The run fails on any 5xx, a status
// code, content type, header or body the document does not describe, or an operation that
// answers without credentials (`ignored_auth`). Bounded: 10 (write) and 5 (read) examples per
// operation, and a 90 s / 45 s budget per run.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { run, HUBAUTH_BIN, startHubauth, artifactPath } from './lib/harness.mjs';
import { VENV_BIN } from './lib/jupyterhub.mjs';

const SCHEMATHESIS = path.join(VENV_BIN, 'schemathesis');
const CHECKS = [
  'not_a_server_error', 'status_code_conformance', 'content_type_conformance',
  'response_schema_conformance', 'response_headers_conformance', 'ignored_auth',
].join(',');

let hubauth;

async function token(scope) {
  const { stdout } = await run(HUBAUTH_BIN, ['admin', 'tokens', 'create', '--config', hubauth.configPath, '--name', `schemathesis ${scope}`, '--scope', scope]);
  const value = stdout.trim();
  assert.match(value, /^hubauth_admin_/);
  return value;
}

async function schemathesis(label, bearer, examples, seconds) {
  const args = [
    'run', `${hubauth.issuer}/admin/api/openapi.json`,
    '-H', `Authorization: Bearer ${bearer}`,
    '--checks', CHECKS,
    '-n', String(examples), '--max-time', String(seconds), '--seed', '20261202',
    '--report', 'junit', '--report-junit-path', artifactPath(`schemathesis-${label}.xml`),
  ];
  try {
    const { stdout } = await run(SCHEMATHESIS, args, { timeout: 200_000, cwd: path.dirname(artifactPath('x')) });
    return stdout;
  } catch (e) {
    assert.fail(`schemathesis (${label}) found problems:\n${e.message.slice(-6000)}`);
  }
}

describe('the admin API matches its OpenAPI document (Schemathesis)', () => {
  before(async () => { hubauth = await startHubauth({ name: 'hubauth-openapi' }); });
  after(async () => { await hubauth?.stop(); });

  it('serves an OpenAPI 3.1 document for this issuer', async () => {
    const doc = await (await fetch(`${hubauth.issuer}/admin/api/openapi.json`)).json();
    assert.match(doc.openapi, /^3\.1\./);
    assert.equal(doc.servers[0].url, hubauth.issuer);
    for (const p of ['/admin/api/invites', '/admin/api/access', '/admin/api/report/activity', '/admin/api/tokens']) {
      assert.ok(doc.paths[p], `${p} is documented`);
    }
    assert.ok(doc.components.securitySchemes.bearer, 'Bearer auth is described');
  });

  it('a write token: no 5xx, every answer as documented, nothing answers without credentials', async () => {
    const out = await schemathesis('write', await token('write'), 10, 90);
    assert.match(out, /Test cases:\s*\n\s*\d+ generated, \d+ passed/, out.slice(-3000));
  });

  it('a read token: writes are refused as documented', async () => {
    const out = await schemathesis('read', await token('read'), 5, 45);
    assert.match(out, /Test cases:\s*\n\s*\d+ generated, \d+ passed/, out.slice(-3000));
  });
});
