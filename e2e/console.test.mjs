// The hub admins' console (issue 12) in headless Chromium against `hubauth serve`:
//
//  1. An admin (ada, dev group `admins`, `[admin] groups = ["admins"]`) signs in to the console
//     through hubauth's own sign-in in the browser and comes back to the page she asked for.
//  2. `[access]` admits only `admins` and `staff`: olivia's sign-in to the hub is refused. Ada adds
//     olivia to the allow-list on /admin/access; olivia's sign-in then succeeds.
//  3. Ada creates an invite (its link shown once, on the creation page only) and revokes it.
//  4. The audit log filtered by actor = ada shows her changes; the activity report lists people.
//  5. bob (group `staff`: admitted to the hub, no admin) gets 403 on every console URL and every
//     admin API route, with his session cookie, reading or changing.
//  6. A page on another origin auto-submitting a form to /admin/access with ada's cookie, and a
//     fetch with her cookie but without (or with a wrong) CSRF token, are refused; nothing changes.
//
// Every console page is screenshotted to e2e/artifacts/console-*.png and checked with axe-core
// (no serious or critical violation). Everything runs on 127.0.0.1 and is killed in after().
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { freePort, tempDir, run, signInAndRedeem, HUBAUTH_BIN, E2E_DIR } from './lib/harness.mjs';
import { launchChromium, screenshotter, where } from './lib/browser.mjs';
import { startHubauthServe, tomlStr } from './lib/upstream-oidc.mjs';

const AXE = path.join(E2E_DIR, 'node_modules', 'axe-core', 'axe.min.js');
const CLIENT_SECRET = randomBytes(24).toString('hex');
const REDIRECT = 'http://127.0.0.1:9/hub/oauth_callback'; // never served: the test reads the redirect
const PASSWORD = 'console-e2e-pass';
const PREFIX = 'console';

// Every console page and every admin API route a non-admin must be refused (add new ones here).
const CONSOLE_URLS = ['/admin/', '/admin/users', '/admin/users/ada', '/admin/access', '/admin/invites', '/admin/audit',
  '/admin/report', '/admin/report.csv', '/admin/tokens'];
const API_ROUTES = [
  ['GET', '/admin/api/invites'], ['POST', '/admin/api/invites'], ['DELETE', '/admin/api/invites/x'],
  ['GET', '/admin/api/access'], ['POST', '/admin/api/access'], ['DELETE', '/admin/api/access/x'],
  ['GET', '/admin/api/report/activity'], ['GET', '/admin/api/audit'],
  ['GET', '/admin/api/tokens'], ['POST', '/admin/api/tokens'], ['DELETE', '/admin/api/tokens/x'],
  ['GET', '/admin/api/users'], ['GET', '/admin/api/users/ada'], ['POST', '/admin/api/users/ada/block'],
  ['POST', '/admin/api/users/ada/unblock'], ['POST', '/admin/api/users/ada/revoke-sessions'],
  ['DELETE', '/admin/api/users/ada'], ['POST', '/admin/api/users/bulk'],
];

let workDir;
let port;
let issuer;
let hubauth;
let browser;
let evil;
const screenshot = screenshotter(PREFIX);

function config(devHash) {
  const user = (name, groups) => `[[connectors.users]]
username = ${tomlStr(name)}
password_hash = ${tomlStr(devHash)}
groups = [${groups.map(tomlStr).join(', ')}]
`;
  return `issuer = ${tomlStr(`http://127.0.0.1:${port}`)}
listen = ${tomlStr(`127.0.0.1:${port}`)}
[storage]
url = ${tomlStr(`sqlite://${path.join(workDir, 'hubauth.db')}`)}
[access]
allowed_groups = ["admins", "staff"]
[admin]
groups = ["admins"]
[[clients]]
id = "hub"
secret = ${tomlStr(CLIENT_SECRET)}
redirect_uris = [${tomlStr(REDIRECT)}]
[[connectors]]
type = "dev"
id = "dev"
${user('ada', ['admins'])}${user('bob', ['staff'])}${user('olivia', [])}`;
}

/** `name` signs in to the hub (authorization code + PKCE); rejects when hubauth refuses. */
function hubSignIn(name) {
  return signInAndRedeem({
    base: issuer, clientId: 'hub', clientSecret: CLIENT_SECRET, redirectUri: REDIRECT, username: name,
    password: PASSWORD,
  });
}

/** axe-core on the page: no violation of serious or critical impact. */
async function axeCheck(page, name) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(() => globalThis.axe.run());
  assert.ok(result.passes.length > 10, `axe ran on ${name}`);
  const bad = result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  assert.deepEqual(bad, [], `axe on ${name}`);
}

async function look(page, name) {
  await screenshot(page, name);
  await axeCheck(page, name);
}

/** A fresh browser context signed in to the console as `name`, on `next`; its page. */
async function consoleSignIn(name, next) {
  // bypassCSP: only so axe can be injected (hubauth's CSP allows no script, which is the point).
  const context = await browser.newContext({ baseURL: issuer, bypassCSP: true });
  const page = await context.newPage();
  await page.goto(next);
  assert.equal(new URL(page.url()).pathname, '/login', await where(page, PREFIX));
  await page.fill('#username', name);
  await page.fill('#password', PASSWORD);
  const [response] = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  return { context, page, response };
}

async function accessEntries(context) {
  const r = await context.request.get('/admin/api/access');
  assert.equal(r.status(), 200);
  return r.json();
}

describe('the hub admins console in a browser', { timeout: 120_000 }, () => {
  let ada;

  before(async () => {
    workDir = tempDir('console');
    port = await freePort();
    const devHash = (await run(HUBAUTH_BIN, ['hash-password', '--password', PASSWORD])).stdout.trim();
    hubauth = await startHubauthServe({ name: 'console-hubauth', dir: workDir, port, toml: config(devHash) });
    issuer = hubauth.issuer;
    browser = await launchChromium();
    // Another origin (another port is another origin, though the same site): a page that submits
    // a form to the console as soon as it loads.
    const evilPort = await freePort();
    evil = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><title>prize</title><form method="post" action="${issuer}/admin/access">
<input name="kind" value="username"><input name="value" value="mallory"><input name="groups" value="admins">
</form><script>document.forms[0].submit()</script>`);
    });
    await new Promise((resolve) => evil.listen(evilPort, '127.0.0.1', resolve));
    evil.url = `http://127.0.0.1:${evilPort}/`;
  });

  after(async () => {
    await ada?.context.close();
    await browser?.close();
    evil?.close();
    await hubauth?.stop();
    if (workDir && !process.env.E2E_KEEP_TMP) rmSync(workDir, { recursive: true, force: true });
  });

  it('an admin signs in through hubauth and lands on the page she asked for', async () => {
    ada = await consoleSignIn('ada', '/admin/access');
    assert.equal(new URL(ada.page.url()).pathname, '/admin/access', await where(ada.page, PREFIX));
    assert.equal(ada.response.status(), 200);
    await ada.page.goto('/admin/');
    assert.match(await ada.page.textContent('main'), /Signed in as ada, with admin access/);
    await look(ada.page, 'home');
  });

  it('the allow-list admits someone the [access] rules refuse', async () => {
    await assert.rejects(hubSignIn('olivia'), /answered 403/, 'olivia is outside allowed_groups');
    const { page } = ada;
    await page.goto('/admin/access');
    assert.doesNotMatch(await page.textContent('main'), /admits everyone/, 'the [access] rule restricts');
    await look(page, 'access-empty');
    await page.selectOption('#kind', 'username');
    await page.fill('#value', 'olivia');
    await page.fill('#groups', 'guests');
    await page.fill('#note', 'visiting for the e2e');
    await page.fill('#expires_in', '7d');
    await Promise.all([page.waitForNavigation(), page.click('text=Add to the allow-list')]);
    assert.match(await page.textContent('.notice'), /Added to the allow-list/, await where(page, PREFIX));
    assert.match(await page.textContent('table'), /olivia.*guests.*visiting for the e2e/s);
    await look(page, 'access-added');
    const tokens = await hubSignIn('olivia');
    assert.ok(tokens.id_token, 'olivia is admitted now');

    // A mistake: the page again with a clear error, nothing stored.
    await page.selectOption('#kind', 'email');
    await page.fill('#value', 'not-an-address');
    await Promise.all([page.waitForNavigation(), page.click('text=Add to the allow-list')]);
    assert.match(await page.textContent('.error'), /is not an e-mail address/);
    assert.equal((await accessEntries(ada.context)).length, 1);
    await look(page, 'access-error');
  });

  it('an invite is created, its link shown once, and revoked', async () => {
    const { page } = ada;
    await page.goto('/admin/invites');
    await look(page, 'invites-empty');
    await page.fill('#max_uses', '5');
    await page.fill('#groups', 'workshop');
    await page.fill('#note', 'winter school');
    await Promise.all([page.waitForNavigation(), page.click('text=Create the invite')]);
    const link = await page.inputValue('#link');
    assert.ok(link.startsWith(`${issuer}/invite/`), link);
    assert.equal(await page.getAttribute('#link', 'readonly'), '');
    await look(page, 'invite-created');
    await page.click('text=Back to the invites');
    await page.waitForURL(/\/admin\/invites$/);
    const list = await page.content();
    assert.ok(!list.includes(link.split('/invite/')[1]), 'the list never shows the link');
    assert.match(await page.textContent('table'), /winter school.*0 \/ 5.*open/s);
    await look(page, 'invites-list');
    const open = await fetch(link);
    assert.equal(open.status, 200, 'the link works before it is revoked');
    assert.doesNotMatch(await open.text(), /cannot be used/);
    await Promise.all([page.waitForNavigation(), page.click('button:has-text("Revoke")')]);
    assert.match(await page.textContent('.notice'), /revoked/);
    assert.match(await page.textContent('table'), /revoked/);
    const opened = await (await fetch(link)).text();
    assert.match(opened, /was withdrawn/, 'a revoked link lets no one in');
  });

  it('the audit log filters by actor, and the report lists people', async () => {
    const { page } = ada;
    await page.goto('/admin/audit');
    await page.fill('#actor', 'ada');
    await Promise.all([page.waitForNavigation(), page.click('button:has-text("Filter")')]);
    assert.match(page.url(), /actor=ada/);
    const kinds = await page.$$eval('tbody tr td:nth-child(2) code', (cs) => cs.map((c) => c.textContent));
    assert.deepEqual(kinds, ['invite_revoked', 'invite_created', 'access_allowed'], await where(page, PREFIX));
    const actors = await page.$$eval('tbody tr td:nth-child(3)', (cs) => cs.map((c) => c.textContent));
    assert.ok(actors.every((a) => a === 'ada'), actors.join());
    await look(page, 'audit-by-ada');
    await page.goto('/admin/audit?kind=login');
    await look(page, 'audit-logins');

    await page.goto('/admin/report');
    const names = await page.$$eval('tbody tr td:first-child', (cs) => cs.map((c) => c.textContent));
    assert.deepEqual(names.sort(), ['ada', 'olivia']);
    await look(page, 'report');
    const csv = await ada.context.request.get('/admin/report.csv');
    assert.equal(csv.status(), 200);
    assert.match(await csv.text(), /^username,.*\nada,/s);

    await page.goto('/admin/tokens');
    await page.fill('#name', 'e2e job');
    await Promise.all([page.waitForNavigation(), page.click('text=Create the token')]);
    const token = await page.inputValue('#token');
    assert.match(token, /^hubauth_admin_/);
    await look(page, 'token-created');
    const read = await fetch(`${issuer}/admin/api/audit?limit=1`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(read.status, 200, 'the new read token reads the audit log');
    await page.click('text=Back to the tokens');
    await page.waitForURL(/\/admin\/tokens$/);
    assert.ok(!(await page.content()).includes(token), 'the list never shows a token');
    await look(page, 'tokens');
  });

  it('someone signed in who is no admin gets 403 on every console page and API route', async () => {
    const bob = await consoleSignIn('bob', '/admin/');
    try {
      assert.equal(bob.response.status(), 403, await where(bob.page, PREFIX));
      await screenshot(bob.page, 'not-admin');
      await axeCheck(bob.page, 'not-admin');
      for (const url of CONSOLE_URLS) {
        const r = await bob.page.goto(url);
        assert.equal(r.status(), 403, url);
      }
      const csrf = 'whatever';
      for (const [method, url] of API_ROUTES) {
        const r = await bob.context.request.fetch(url, {
          method, headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
          data: method === 'POST' ? { username: 'bob', expires_in: '1d', name: 'x', scope: 'write' } : undefined,
        });
        assert.equal(r.status(), 403, `${method} ${url} with bob's cookie: ${r.status()} ${await r.text()}`);
      }
      const posts = ['/admin/access', '/admin/invites', '/admin/tokens', '/admin/users/ada/block',
        '/admin/users/ada/delete', '/admin/users/bulk', '/admin/users/bulk/apply'];
      for (const url of posts) {
        const r = await bob.context.request.post(url, { form: { kind: 'username', value: 'bob', expires_in: '1d' } });
        assert.equal(r.status(), 403, url);
      }
    } finally {
      await bob.context.close();
    }
    assert.equal((await accessEntries(ada.context)).length, 1, 'nothing changed');
  });

  it('a forged form post without the CSRF token is refused and changes nothing', async () => {
    const before = await accessEntries(ada.context);
    const page = await ada.context.newPage();
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url() === `${issuer}/admin/access` && r.request().method() === 'POST'),
      page.goto(evil.url),
    ]);
    assert.equal(response.status(), 403, 'the cross-origin form carried the cookie (same site) but no token');
    await page.waitForLoadState();
    assert.match(await page.textContent('body'), /nothing was changed/);
    await screenshot(page, 'forged-form');
    await page.close();
    for (const csrf of [undefined, 'forged']) {
      const form = { kind: 'username', value: 'mallory', ...(csrf ? { csrf } : {}) };
      const r = await ada.context.request.post('/admin/access', { form });
      assert.equal(r.status(), 403, `a fetch with the cookie, csrf ${csrf}`);
      const id = before[0].id;
      const d = await ada.context.request.post(`/admin/access/${id}/delete`, { form: csrf ? { csrf } : {} });
      assert.equal(d.status(), 403);
    }
    const api = await ada.context.request.post('/admin/api/access', { data: { username: 'mallory' } });
    assert.equal(api.status(), 401, 'the API wants X-CSRF-Token with a session');
    assert.deepEqual(await accessEntries(ada.context), before, 'nothing changed');
  });
});
