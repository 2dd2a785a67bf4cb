// A real JupyterHub (GenericOAuthenticator, e2e/.venv) logging in through hubauth, which federates a
// real upstream OpenID provider (oidc-provider v9, e2e/upstream/server.mjs) with its `oidc`
// connector. hubauth runs `serve` with two connectors (the upstream + a `dev` one), so the person
// sees hubauth's chooser, picks "University login", logs in and consents at the upstream, and lands
// on the hub with the upstream's groups. Driven by headless Chromium (playwright-core).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, existsSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { launchChromium, screenshotter, loggedContext, jupyterhubApi, where as whereIn } from './lib/browser.mjs';
import {
  freePort, tempDir, run, artifactPath, killPidFile, HUBAUTH_BIN,
} from './lib/harness.mjs';
import { startJupyterHub } from './lib/jupyterhub.mjs';
import {
  startUpstream, generateJwks, startHubauthServe, oidcConnectorToml, tomlStr,
} from './lib/upstream-oidc.mjs';

const API_TOKEN = randomBytes(24).toString('hex');
// Like `openssl rand -base64`, plus `%2B`: this hub uses OAuthenticator's basic_auth, which puts
// the secret in the Basic header verbatim (not form-urlencoded as RFC 6749 §2.3.1 says).
const HUB_SECRET = `${randomBytes(24).toString('base64')}+/%2B=`;
const AUTH_REFRESH_AGE = 3; // seconds
const UPSTREAM_NAME = 'University login';

let upstream; let hubauth; let hub; let hubUrl; let workDir; let browser; let proxyPidFile;
const screenshot = screenshotter('jhup');
const api = (pathname, options) => jupyterhubApi(hubUrl, API_TOKEN, pathname, options);
const newContext = (label) => loggedContext(browser, { prefix: 'jhup', label, baseURL: hubUrl });
const where = (page) => whereIn(page, 'jhup');

/**
 * Hub login page → "Sign in with hubauth" → hubauth chooser → "University login" → upstream login
 * (+ consent) → back through hubauth to the hub's oauth_callback. Returns the callback response.
 */
async function loginThroughUpstream(page, user) {
  await page.goto('/hub/login');
  const link = page.locator('a[href*="oauth_login"]');
  await link.first().waitFor({ timeout: 30_000 }).catch(async () => assert.fail(`expected the hub's login page ${await where(page)}`));
  const callback = page.waitForResponse((r) => r.url().includes('/hub/oauth_callback'), { timeout: 60_000 });
  callback.catch(() => {});
  await link.first().click();

  const choice = page.getByRole('link', { name: new RegExp(UPSTREAM_NAME) });
  await choice.waitFor({ timeout: 30_000 }).catch(async () => assert.fail(`expected hubauth's chooser ${await where(page)}`));
  assert.equal(new URL(page.url()).origin, hubauth.issuer, 'the chooser is hubauth\'s');
  await screenshot(page, `hubauth-chooser-${user}`);
  await choice.click();

  const login = page.locator('input[name="login"]');
  await login.waitFor({ timeout: 30_000 }).catch(async () => assert.fail(`expected the upstream's login page ${await where(page)}`));
  assert.equal(new URL(page.url()).origin, upstream.issuer, 'the login page is the upstream\'s');
  await login.fill(user);
  await page.fill('input[name="password"]', `${user}-any-password`);
  await screenshot(page, `upstream-login-${user}`);
  await page.locator('button[type="submit"]').click();
  const consent = page.locator('input[name="prompt"][value="consent"]');
  const outcome = await Promise.race([
    consent.waitFor({ state: 'attached', timeout: 20_000 }).then(() => 'consent', () => null),
    page.waitForURL((u) => !u.href.startsWith(upstream.issuer), { timeout: 20_000 }).then(() => 'left', () => null),
  ]);
  if (outcome === 'consent') {
    await screenshot(page, `upstream-consent-${user}`);
    await page.locator('form:has(input[name="prompt"][value="consent"]) button[type="submit"]').click();
  }
  const cb = await callback.catch(async () => assert.fail(`never reached the hub's oauth_callback ${await where(page)}`));
  await page.waitForLoadState('load');
  return cb;
}

describe('JupyterHub → hubauth → real upstream OpenID provider (headless Chromium)', { timeout: 170_000 }, () => {
  before(async () => {
    workDir = tempDir('jupyterhub-upstream');
    const hubPort = await freePort();
    const hubApiPort = await freePort();
    const proxyApiPort = await freePort();
    const hubauthPort = await freePort();
    hubUrl = `http://127.0.0.1:${hubPort}`;
    const issuer = `http://127.0.0.1:${hubauthPort}`;

    upstream = await startUpstream({
      name: 'jhup-upstream',
      redirectUris: [`${issuer}/callback/upstream`],
      jwks: generateJwks({ kid: 'jhup-key-1' }),
    });
    const devHash = (await run(HUBAUTH_BIN, ['hash-password', '--password', 'dana-staff-pass'])).stdout.trim();
    const toml = `# written by e2e/jupyterhub-upstream.test.mjs
issuer = ${tomlStr(issuer)}
listen = ${tomlStr(`127.0.0.1:${hubauthPort}`)}

[storage]
url = "sqlite://hubauth.db"

[[clients]]
id = "jupyterhub"
name = "Physics Hub"
secret = { env = "HUBAUTH_CLIENT_SECRET" }
redirect_uris = [${tomlStr(`${hubUrl}/hub/oauth_callback`)}]
post_logout_redirect_uris = [${tomlStr(`${hubUrl}/hub/`)}]
[clients.hub]
allowed_groups = ["upstream:physics"]
admin_groups = ["hub-admins"]
secret_env = "HUBAUTH_CLIENT_SECRET"

${oidcConnectorToml(upstream, { name: UPSTREAM_NAME })}
[[connectors]]
type = "dev"
id = "staff"
name = "Staff accounts"

[[connectors.users]]
username = "dana"
password_hash = ${tomlStr(devHash)}
groups = ["staff"]
`;
    const env = {
      HUBAUTH_CRYPT_KEY: randomBytes(32).toString('hex'),
      HUBAUTH_UPSTREAM_SECRET: upstream.clientSecret,
      HUBAUTH_CLIENT_SECRET: HUB_SECRET,
    };
    hubauth = await startHubauthServe({ name: 'jhup-hubauth', dir: workDir, port: hubauthPort, toml, env });

    const { stdout: fragment } = await run(HUBAUTH_BIN, ['jupyterhub-config', '--config', hubauth.configPath, '--client', 'jupyterhub'], {
      env: { ...process.env, ...env },
    });
    writeFileSync(artifactPath('jhup-hubauth-fragment.py'), fragment);
    assert.match(fragment, /allowed_groups = \{['"]upstream:physics['"]\}/, 'fragment allows the upstream group upstream:physics');

    ({ proc: hub, proxyPidFile } = await startJupyterHub({
      name: 'jhup', workDir, fragment, hubUrl, hubApiPort, proxyApiPort,
      adminToken: API_TOKEN, authRefreshAge: AUTH_REFRESH_AGE,
      env: { HUBAUTH_CLIENT_SECRET: HUB_SECRET },
      extraConfig: 'c.GenericOAuthenticator.basic_auth = True',
      secrets: [HUB_SECRET],
    }));

    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await hub?.stop();
    if (proxyPidFile && existsSync(proxyPidFile)) killPidFile(proxyPidFile);
    await hubauth?.stop();
    await upstream?.stop();
    if (workDir && !process.env.E2E_KEEP_TMP) rmSync(workDir, { recursive: true, force: true });
  });

  it('alice logs in through the upstream and reaches the hub; the REST API shows her with group physics', async () => {
    const { page, close } = await newContext('alice');
    try {
      const cb = await loginThroughUpstream(page, 'alice');
      assert.ok([302, 303].includes(cb.status()), `oauth_callback redirects on success (got ${cb.status()}); ${await where(page)}`);
      await page.waitForURL(/\/hub\/home/, { timeout: 30_000 }).catch(async () => assert.fail(`expected the hub home page ${await where(page)}`));
      await screenshot(page, 'hub-home-alice');
      assert.ok((await page.textContent('body')).includes('alice'), 'hub home shows alice');

      const r = await api('/users/alice');
      assert.equal(r.status, 200, `alice exists in JupyterHub: ${r.text}`);
      writeFileSync(artifactPath('jhup-api-user-alice.json'), JSON.stringify(r.json, null, 2));
      assert.deepEqual([...r.json.groups].sort(), ['upstream:hpc-users', 'upstream:physics'], 'hub groups = the upstream groups, in the connector\'s namespace');
      assert.equal(r.json.admin, false, 'alice is not a hub admin');
      const st = r.json.auth_state;
      assert.equal(st?.oauth_user?.preferred_username, 'alice', 'auth_state.oauth_user is hubauth\'s userinfo');
      assert.deepEqual(st.oauth_user.groups, ['upstream:physics', 'upstream:hpc-users']);
      assert.ok(st.refresh_token, 'the hub holds a hubauth refresh token');

      const g = await api(`/groups/${encodeURIComponent('upstream:physics')}`);
      assert.equal(g.status, 200, g.text);
      assert.ok(g.json.users.includes('alice'), 'group physics contains alice');
    } finally {
      await close();
    }
  });

  it('bob (no upstream groups) is refused by the hub (403) and not added', async () => {
    const { page, close } = await newContext('bob');
    try {
      const cb = await loginThroughUpstream(page, 'bob');
      await screenshot(page, 'hub-403-bob');
      assert.equal(cb.status(), 403, `oauth_callback answers 403 (got ${cb.status()})`);
      const r = await api('/users/bob');
      assert.equal(r.status, 404, 'bob was not added to the hub');
    } finally {
      await close();
    }
  });

  it('the hub refreshes alice\'s auth at hubauth (refresh-token rotation) after her access token is revoked', async () => {
    const { page, context, close } = await newContext('refresh');
    try {
      await loginThroughUpstream(page, 'alice');
      await page.waitForURL(/\/hub\/home/, { timeout: 30_000 }).catch(async () => assert.fail(`expected the hub home page ${await where(page)}`));
      const beforeState = (await api('/users/alice')).json.auth_state;
      const disco = await (await fetch(`${hubauth.issuer}/.well-known/openid-configuration`)).json();
      const rev = await fetch(disco.revocation_endpoint, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`jupyterhub:${HUB_SECRET}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ token: beforeState.access_token, token_type_hint: 'access_token' }),
      });
      assert.equal(rev.status, 200, 'revocation accepted');
      await upstream.clearRequests();

      await new Promise((r) => setTimeout(r, (AUTH_REFRESH_AGE + 1) * 1000));
      const res = await context.request.get('/hub/home', { maxRedirects: 0 });
      assert.equal(res.status(), 200, `still logged in after refresh (got ${res.status()} → ${res.headers().location || ''}); see artifacts/jhup-jupyterhub.log`);
      const afterUser = (await api('/users/alice')).json;
      assert.notEqual(afterUser.auth_state.refresh_token, beforeState.refresh_token, 'the hub stored the rotated refresh token');
      assert.deepEqual([...afterUser.groups].sort(), ['upstream:hpc-users', 'upstream:physics'], 'groups kept after refresh');
      const upstreamRefresh = (await upstream.requests()).filter((r) => r.path === '/token' && r.form?.grant_type === 'refresh_token');
      console.log(`# hubauth ${upstreamRefresh.length ? `refreshed at the upstream too (${upstreamRefresh.map((r) => r.status).join(', ')})` : 'did not call the upstream on the hub\'s refresh'}`);
    } finally {
      await close();
    }
  });
});
