// Starting a real JupyterHub (+ configurable-http-proxy) for the e2e tests: the fragment
// `hubauth jupyterhub-config` printed, plus test-only settings (loopback ports, files in the
// test's work dir, an admin service token, the spawner), then wait until the hub answers.
import { writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { E2E_DIR, startProcess, registerPidFile, waitForHttp, artifactPath } from './harness.mjs';

export const VENV_BIN = path.join(E2E_DIR, '.venv', 'bin');
export const NODE_BIN = path.join(E2E_DIR, 'node_modules', '.bin');

const DEFAULT_ADMIN_SCOPES = ['admin:users', 'admin:auth_state', 'list:users', 'read:users', 'read:groups', 'list:groups'];

/**
 * Writes jupyterhub_config.py (fragment + test-only settings) into `workDir` and starts the hub.
 * Options: name (log/artifact prefix), workDir, fragment, hubUrl, hubApiPort, proxyApiPort,
 * adminToken, adminScopes, authRefreshAge, extraConfig (more Python), env (extra env vars),
 * cryptKey, secrets (values to mask in the config artifact).
 * Returns { proc, proxyPidFile, configFile }.
 */
export async function startJupyterHub({
  name, workDir, fragment, hubUrl, hubApiPort, proxyApiPort, adminToken,
  adminScopes = DEFAULT_ADMIN_SCOPES, authRefreshAge, extraConfig = '', env = {},
  cryptKey = randomBytes(32).toString('hex'), secrets = [],
}) {
  const proxyPidFile = path.join(workDir, 'jupyterhub-proxy.pid');
  const py = (v) => JSON.stringify(v); // JSON strings are valid Python literals here
  const testOnly = `

# ---- test-only settings appended by e2e/lib/jupyterhub.mjs (${name}) ----
c.JupyterHub.bind_url = ${py(`${hubUrl}/`)}
c.JupyterHub.hub_ip = '127.0.0.1'
c.JupyterHub.hub_port = ${hubApiPort}
c.ConfigurableHTTPProxy.api_url = ${py(`http://127.0.0.1:${proxyApiPort}`)}
c.ConfigurableHTTPProxy.pid_file = ${py(proxyPidFile)}
c.JupyterHub.db_url = ${py(`sqlite:///${path.join(workDir, 'jupyterhub.sqlite')}`)}
c.JupyterHub.cookie_secret_file = ${py(path.join(workDir, 'jupyterhub_cookie_secret'))}
c.JupyterHub.pid_file = ${py(path.join(workDir, 'jupyterhub.pid'))}
c.JupyterHub.spawner_class = 'simple'
c.JupyterHub.implicit_spawn_seconds = 0
c.JupyterHub.default_url = '/hub/home'
c.JupyterHub.log_level = 'DEBUG'
c.JupyterHub.services = [{'name': 'e2e-admin', 'api_token': ${py(adminToken)}}]
c.JupyterHub.load_roles = [{
    'name': 'e2e-admin',
    'scopes': ${py(adminScopes)},
    'services': ['e2e-admin'],
}]
${authRefreshAge === undefined ? '' : `c.Authenticator.auth_refresh_age = ${authRefreshAge}`}
${extraConfig}
`;
  const configFile = path.join(workDir, 'jupyterhub_config.py');
  writeFileSync(configFile, fragment + testOnly, { mode: 0o600 });
  let shown = fragment + testOnly;
  for (const s of [adminToken, ...secrets]) shown = shown.split(s).join('<secret>');
  writeFileSync(artifactPath(`${name}-jupyterhub_config.py`), shown);

  registerPidFile(proxyPidFile);
  const proc = startProcess(path.join(VENV_BIN, 'jupyterhub'), ['-f', configFile], {
    logName: `${name}-jupyterhub`,
    cwd: workDir,
    env: { PATH: `${NODE_BIN}:${VENV_BIN}:${process.env.PATH}`, JUPYTERHUB_CRYPT_KEY: cryptKey, ...env },
  });
  await waitForHttp(`${hubUrl}/hub/api/`, { proc, timeoutMs: 90_000, what: 'jupyterhub (via configurable-http-proxy)' });
  return { proc, proxyPidFile, configFile };
}
