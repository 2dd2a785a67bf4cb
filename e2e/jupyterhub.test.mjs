// A real JupyterHub (GenericOAuthenticator, from e2e/.venv) configured with the fragment printed by
// `hubauth jupyterhub-config`, driven by headless Chromium (playwright-core, Debian's /usr/bin/chromium).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, existsSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { launchChromium, screenshotter, loggedContext, jupyterhubApi } from './lib/browser.mjs';
import {
  startHubauth, freePort, tempDir, run, artifactPath, killPidFile, HUBAUTH_BIN, DEMO_USERS,
} from './lib/harness.mjs';
import { startJupyterHub } from './lib/jupyterhub.mjs';

const API_TOKEN = randomBytes(24).toString('hex');
const AUTH_REFRESH_AGE = 3; // seconds; small so the refresh test does not wait long

let hubauth; let hub; let hubUrl; let workDir; let browser; let proxyPidFile;
const screenshot = screenshotter('jh');
const api = (pathname, options) => jupyterhubApi(hubUrl, API_TOKEN, pathname, options);
/** Fresh browser context (no cookies) with console + network logging. */
const newContext = (label) => loggedContext(browser, { prefix: 'jh', label, baseURL: hubUrl });

/** On the hubauth login form: fill and submit. */
async function submitHubauthForm(page, user, password) {
  await page.waitForSelector('#username', { timeout: 15_000 });
  assert.equal(new URL(page.url()).origin, hubauth.issuer, 'login form is served by hubauth');
  await page.fill('#username', user);
  await page.fill('#password', password);
  await screenshot(page, `hubauth-form-${user}`);
  await Promise.all([
    page.waitForURL((u) => u.origin === hubUrl, { timeout: 30_000 }),
    page.locator('form[method="post" i] [type="submit"], form[method="post" i] button:not([type]), form[method="post" i] button[type="submit"]').first().click(),
  ]);
}

/** From the hub's /hub/login page: click "Sign in with …" and complete the hubauth form if shown. */
async function loginThroughHub(page, user, { expectForm = true } = {}) {
  await page.goto('/hub/login');
  await screenshot(page, `hub-login-${user}`);
  const link = page.locator('a[href*="oauth_login"]');
  await link.first().waitFor({ timeout: 15_000 });
  const callback = page.waitForResponse((r) => r.url().includes('/hub/oauth_callback'), { timeout: 30_000 });
  await link.first().click();
  if (expectForm) {
    await submitHubauthForm(page, user, DEMO_USERS[user].password);
  }
  const cb = await callback;
  await page.waitForLoadState('load');
  return cb;
}

describe('JupyterHub + OAuthenticator against hubauth demo (headless Chromium)', { timeout: 300_000 }, () => {
  before(async () => {
    workDir = tempDir('jupyterhub');
    const hubPort = await freePort();
    const hubApiPort = await freePort();
    const proxyApiPort = await freePort();
    hubUrl = `http://127.0.0.1:${hubPort}`;
    hubauth = await startHubauth({ name: 'jh-hubauth', hubUrl });

    const { stdout: fragment } = await run(HUBAUTH_BIN, ['jupyterhub-config', '--config', hubauth.configPath, '--client', 'jupyterhub']);
    writeFileSync(artifactPath('jh-hubauth-fragment.py'), fragment);
    assert.match(fragment, /HUBAUTH_CLIENT_SECRET/, 'fragment reads the secret from $HUBAUTH_CLIENT_SECRET');
    assert.ok(!fragment.includes(hubauth.secret), 'fragment does not embed the client secret');

    ({ proc: hub, proxyPidFile } = await startJupyterHub({
      name: 'jh', workDir, fragment, hubUrl, hubApiPort, proxyApiPort,
      adminToken: API_TOKEN, authRefreshAge: AUTH_REFRESH_AGE,
      env: { HUBAUTH_CLIENT_SECRET: hubauth.secret },
    }));

    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await hub?.stop();
    if (proxyPidFile && existsSync(proxyPidFile)) killPidFile(proxyPidFile);
    await hubauth?.stop();
    if (workDir && !process.env.E2E_KEEP_TMP) rmSync(workDir, { recursive: true, force: true });
  });

  it('the hub login page offers "Sign in with" hubauth and sends the browser to hubauth /authorize', async () => {
    const { page, close } = await newContext('authorize-redirect');
    try {
      await page.goto('/hub/login');
      const link = page.locator('a[href*="oauth_login"]');
      await link.first().waitFor();
      await link.first().click();
      await page.waitForSelector('#username');
      const u = new URL(page.url());
      assert.equal(u.origin, hubauth.issuer);
      assert.equal(u.pathname, '/login');
      await screenshot(page, 'hubauth-login-form');
    } finally {
      await close();
    }
  });

  for (const [user, expected] of [['ada', { admin: true, groups: ['admins'] }], ['sam', { admin: false, groups: ['students'] }]]) {
    it(`${user} logs in through hubauth, reaches the hub, has groups ${JSON.stringify(expected.groups)}, admin=${expected.admin}`, async () => {
      const { page, close } = await newContext(`login-${user}`);
      try {
        const cb = await loginThroughHub(page, user);
        assert.ok(cb.status() === 302 || cb.status() === 303, `oauth_callback redirects on success (got ${cb.status()})`);
        await page.waitForURL(/\/hub\/home/, { timeout: 15_000 });
        await screenshot(page, `hub-home-${user}`);
        const body = await page.textContent('body');
        assert.ok(body.includes(user), `hub home shows the user name ${user}`);

        const r = await api(`/users/${user}`);
        assert.equal(r.status, 200, `user ${user} exists in JupyterHub: ${r.text}`);
        writeFileSync(artifactPath(`jh-api-user-${user}.json`), JSON.stringify(r.json, null, 2));
        assert.deepEqual([...r.json.groups].sort(), expected.groups, 'groups from hubauth');
        assert.equal(r.json.admin, expected.admin, 'admin flag from admin_groups');
        const st = r.json.auth_state;
        assert.ok(st && st.access_token, 'auth_state has the access token (enable_auth_state)');
        assert.ok(st.refresh_token, 'auth_state has a refresh token');
        assert.equal(st.oauth_user?.preferred_username, user, 'auth_state.oauth_user is the userinfo JSON');

        // The group exists in the hub and contains the user.
        const g = await api(`/groups/${expected.groups[0]}`);
        assert.equal(g.status, 200, g.text);
        assert.ok(g.json.users.includes(user), `group ${expected.groups[0]} contains ${user}`);

        // Admin page: allowed for admins only.
        const adminResp = await page.goto('/hub/admin');
        await screenshot(page, `hub-admin-page-${user}`);
        if (expected.admin) assert.equal(adminResp.status(), 200, 'ada can open /hub/admin');
        else assert.equal(adminResp.status(), 403, 'sam gets 403 on /hub/admin');
      } finally {
        await close();
      }
    });
  }

  it('olivia (no allowed group) meets hubauth\'s refusal page with its reason and is not admitted', async () => {
    const { page, close } = await newContext('login-olivia');
    try {
      await page.goto('/hub/login');
      const link = page.locator('a[href*="oauth_login"]');
      await link.first().waitFor({ timeout: 15_000 });
      await link.first().click();
      await page.waitForSelector('#username', { timeout: 15_000 });
      await page.fill('#username', 'olivia');
      await page.fill('#password', DEMO_USERS.olivia.password);
      // The demo's [access] rule refuses her at hubauth: the answer is hubauth's page, not a redirect.
      const [refusal] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).origin === hubauth.issuer, { timeout: 30_000 }),
        page.locator('form[method="post" i] [type="submit"], form[method="post" i] button:not([type]), form[method="post" i] button[type="submit"]').first().click(),
      ]);
      await page.waitForLoadState('load');
      await screenshot(page, 'hubauth-refusal-olivia');
      assert.equal(refusal.status(), 403, 'hubauth refuses the sign-in');
      assert.equal(new URL(page.url()).origin, hubauth.issuer, 'the refusal page is hubauth\'s');
      const body = await page.content();
      assert.match(body, /<code>not_allowed<\/code>/, 'the page names the reason code');
      assert.match(body, /olivia/);
      const home = await page.goto(`${hubUrl}/hub/home`);
      assert.ok(new URL(page.url()).pathname.startsWith('/hub/login'), `olivia has no hub session (landed on ${page.url()}, ${home.status()})`);
      const r = await api('/users/olivia');
      assert.equal(r.status, 404, 'olivia was not added to the hub');
    } finally {
      await close();
    }
  });

  it('logging out of the hub and back in works', async () => {
    const { page, close } = await newContext('logout-relogin');
    try {
      await loginThroughHub(page, 'sam');
      await page.waitForURL(/\/hub\/home/);
      await page.goto('/hub/logout');
      await page.waitForLoadState('load');
      await screenshot(page, 'after-logout');
      // With logout_redirect_url pointing at hubauth's end_session endpoint (no id_token_hint is
      // possible there), hubauth asks the person to confirm: click "Sign out" like a person would.
      let endedHubauthSession = false;
      if (new URL(page.url()).origin === hubauth.issuer) {
        const button = page.locator('form[method="post" i] button[type="submit"], form[method="post" i] [type="submit"]').first();
        await button.waitFor({ timeout: 10_000 });
        await Promise.all([
          page.waitForURL((u) => u.origin === hubUrl, { timeout: 15_000 }),
          button.click(),
        ]);
        endedHubauthSession = true;
        await screenshot(page, 'after-hubauth-signout');
        assert.ok(new URL(page.url()).pathname.startsWith('/hub/'), `back on the hub after signing out (${page.url()})`);
      }
      // The hub session is gone.
      await page.goto('/hub/home');
      assert.ok(new URL(page.url()).pathname.startsWith('/hub/login') || new URL(page.url()).origin === hubauth.issuer,
        `after logout /hub/home needs a login (landed on ${page.url()})`);

      // Log in again. If the hub's logout also ended the hubauth session (logout_redirect_url →
      // end_session), hubauth shows the form; otherwise SSO takes the user straight back.
      await page.goto('/hub/login');
      const link = page.locator('a[href*="oauth_login"]');
      await link.first().waitFor();
      await link.first().click();
      await page.waitForURL((u) => u.pathname === '/login' || u.pathname.startsWith('/hub/home'), { timeout: 30_000 });
      const sawForm = new URL(page.url()).pathname === '/login';
      console.log(`# re-login after hub logout: hubauth ${sawForm ? 'showed the login form (session ended)' : 'used SSO (session kept)'}`);
      if (endedHubauthSession) assert.ok(sawForm, 'after signing out at hubauth, logging in again needs the form');
      if (sawForm) await submitHubauthForm(page, 'sam', 'sam-demo');
      await page.waitForURL(/\/hub\/home/, { timeout: 15_000 });
      await screenshot(page, 'relogin-home');
      assert.ok((await page.textContent('body')).includes('sam'));
    } finally {
      await close();
    }
  });

  it('the hub refreshes auth via the refresh token (rotation) when the access token is revoked', async () => {
    const { page, context, close } = await newContext('refresh');
    try {
      await loginThroughHub(page, 'sam');
      await page.waitForURL(/\/hub\/home/);
      const before = (await api('/users/sam')).json.auth_state;
      assert.ok(before?.refresh_token, 'hub stored a refresh token');

      // Revoke the hub's access token at hubauth (RFC 7009) with the hub's own client credentials.
      const disco = await (await fetch(`${hubauth.issuer}/.well-known/openid-configuration`)).json();
      const rev = await fetch(disco.revocation_endpoint, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`jupyterhub:${hubauth.secret}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ token: before.access_token, token_type_hint: 'access_token' }),
      });
      assert.equal(rev.status, 200, 'revocation accepted');

      // After auth_refresh_age, one cookie-authenticated request makes the hub call refresh_user:
      // userinfo → 401 → refresh_token grant → new tokens stored in auth_state.
      await new Promise((r) => setTimeout(r, (AUTH_REFRESH_AGE + 1) * 1000));
      const res = await context.request.get('/hub/home', { maxRedirects: 0 });
      assert.equal(res.status(), 200, `still logged in after refresh (got ${res.status()} → ${res.headers().location || ''}); see artifacts/jh-jupyterhub.log`);
      const afterState = (await api('/users/sam')).json.auth_state;
      assert.notEqual(afterState.access_token, before.access_token, 'hub got a new access token');
      assert.notEqual(afterState.refresh_token, before.refresh_token, 'hub stored the rotated refresh token');
      const ui = await fetch(disco.userinfo_endpoint, { headers: { authorization: `Bearer ${afterState.access_token}` } });
      assert.equal(ui.status, 200, 'the new access token works');
    } finally {
      await close();
    }
  });
});
