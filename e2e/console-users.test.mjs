// The console's Users section (issue 12) in headless Chromium against `hubauth serve`:
//
//  1. sam, carl, dan and eve sign in for the hub client (tokens kept); ada, in `[admin] groups`,
//     signs in to the console through the dev connector in the browser.
//  2. She finds sam with the search form, opens him, blocks him: the tokens sam's hub got before
//     the block are refused (userinfo 401, refresh refused).
//  3. She ticks carl, dan and eve, asks to delete them, the confirmation page lists exactly them,
//     she confirms: the result page reports each deleted and they are gone from the list.
//  Every page: a screenshot in e2e/artifacts/console-users-*.png and axe-core finds no serious
//  or critical violation.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { launchChromium, screenshotter, where as whereIn } from './lib/browser.mjs';
import { freePort, tempDir, run, signInAndRedeem, HUBAUTH_BIN, E2E_DIR } from './lib/harness.mjs';
import { startHubauthServe, tomlStr } from './lib/upstream-oidc.mjs';

const PREFIX = 'console-users';
const CLIENT_SECRET = randomBytes(24).toString('hex');
const REDIRECT = 'http://127.0.0.1:9/hub/oauth_callback'; // never served: the test reads the redirect
const PASSWORD = 'console-e2e-pass';
const AXE = path.join(E2E_DIR, 'node_modules', 'axe-core', 'axe.min.js');
const PEOPLE = ['sam', 'carl', 'dan', 'eve', 'fay'];

let hubauth;
let base;
let browser;
const screenshot = screenshotter(PREFIX);
const where = (page) => whereIn(page, PREFIX);

function config(port, dir, devHash) {
  const users = ['ada', ...PEOPLE].map((u) => `[[connectors.users]]
username = ${tomlStr(u)}
password_hash = ${tomlStr(devHash)}
name = ${tomlStr(`${u[0].toUpperCase()}${u.slice(1)} Example`)}
email = ${tomlStr(`${u}@example.org`)}
groups = [${u === 'ada' ? '"admins"' : '"students"'}]
`).join('');
  return `issuer = ${tomlStr(`http://127.0.0.1:${port}`)}
listen = ${tomlStr(`127.0.0.1:${port}`)}
[storage]
url = ${tomlStr(`sqlite://${path.join(dir, 'hubauth.db')}`)}
[admin]
groups = ["admins"]
[[clients]]
id = "hub"
secret = ${tomlStr(CLIENT_SECRET)}
redirect_uris = [${tomlStr(REDIRECT)}]
[[connectors]]
type = "dev"
id = "dev"
${users}`;
}

function signIn(username) {
  return signInAndRedeem({ base, clientId: 'hub', clientSecret: CLIENT_SECRET, redirectUri: REDIRECT, username, password: PASSWORD });
}

/** Screenshot, then axe-core: no serious or critical violation. */
async function check(page, name) {
  await screenshot(page, name);
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(async () => window.axe.run());
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`), [],
    `axe on ${name} ${await where(page)}`);
}

describe('the console Users section', { timeout: 120_000 }, () => {
  before(async () => {
    const dir = tempDir('console-users');
    const port = await freePort();
    const devHash = (await run(HUBAUTH_BIN, ['hash-password', '--password', PASSWORD])).stdout.trim();
    hubauth = await startHubauthServe({ name: `${PREFIX}-hubauth`, dir, port, toml: config(port, dir, devHash) });
    base = hubauth.issuer;
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await hubauth?.stop();
  });

  it('an admin finds and blocks a person, then bulk-deletes three through the confirmation page', async () => {
    const tokens = {};
    for (const u of PEOPLE) tokens[u] = await signIn(u);
    const userinfo = (t) => fetch(`${base}/userinfo`, { headers: { authorization: `Bearer ${t}` } });
    assert.equal((await userinfo(tokens.sam.access_token)).status, 200, 'sam works before the block');

    // axe is injected as a script: the console's CSP (rightly) forbids that, so this context bypasses it.
    const context = await browser.newContext({ bypassCSP: true });
    const page = await context.newPage();
    const close = () => context.close();
    try {
      await page.goto(`${base}/admin/users`);
      await page.fill('input[name=username]', 'ada');
      await page.fill('input[name=password]', PASSWORD);
      await Promise.all([page.waitForURL(`${base}/admin/users`), page.press('input[name=password]', 'Enter')]);
      assert.match(await page.textContent('#count'), /6 users/, await where(page));
      await check(page, 'list');

      // Find sam with the search form (keyboard), open him, block him.
      await page.fill('#f-q', 'SAM');
      await Promise.all([page.waitForURL(/q=SAM/), page.press('#f-q', 'Enter')]);
      assert.match(await page.textContent('#count'), /1 user match/, await where(page));
      await check(page, 'search');
      await Promise.all([page.waitForURL(`${base}/admin/users/sam`), page.click('a:text-is("sam")')]);
      assert.match(await page.textContent('main'), /students/);
      await check(page, 'detail');
      await Promise.all([page.waitForURL(/done=blocked/), page.click('button:text-is("Block")')]);
      assert.match(await page.textContent('.notice'), /Blocked/, await where(page));
      assert.ok(await page.isVisible('button:text-is("Unblock")'));
      await check(page, 'blocked');

      // sam's hub tokens from before the block no longer work.
      assert.equal((await userinfo(tokens.sam.access_token)).status, 401, 'the access token is refused');
      const refresh = await fetch(`${base}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'refresh_token', refresh_token: tokens.sam.refresh_token, client_id: 'hub', client_secret: CLIENT_SECRET,
        }),
      });
      assert.notEqual(refresh.status, 200, 'the refresh token is refused');
      assert.equal((await userinfo(tokens.fay.access_token)).status, 200, 'fay is untouched');

      // Bulk delete: tick three, review, confirm.
      await page.goto(`${base}/admin/users`);
      for (const u of ['carl', 'dan', 'eve']) await page.check(`input[type=checkbox][value=${u}]`);
      await page.selectOption('#b-action', 'delete');
      await Promise.all([page.waitForURL(`${base}/admin/users/bulk`), page.click('#b-go')]);
      const affected = await page.$$eval('#affected li', (lis) => lis.map((li) => li.textContent.trim()));
      assert.deepEqual(affected, ['carl', 'dan', 'eve'], await where(page));
      await check(page, 'confirm');
      await Promise.all([page.waitForURL(`${base}/admin/users/bulk/apply`), page.click('button:text-is("Delete 3 users")')]);
      assert.match(await page.textContent('main'), /Done for everyone/, await where(page));
      assert.equal((await page.$$('td:text-is("deleted")')).length, 3);
      await check(page, 'result');

      await page.goto(`${base}/admin/users`);
      const listed = await page.$$eval('input[name=user]', (xs) => xs.map((x) => x.value));
      assert.deepEqual(listed, ['ada', 'fay', 'sam'], await where(page));
      assert.equal((await userinfo(tokens.dan.access_token)).status, 401, 'a deleted person\'s tokens are gone');
      await check(page, 'after-delete');
    } finally {
      await close();
    }
  });
});
