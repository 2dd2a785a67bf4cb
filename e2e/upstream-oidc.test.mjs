// hubauth federating a REAL upstream OpenID provider: oidc-provider v9 (e2e/upstream/server.mjs)
// behind hubauth's `oidc` connector, next to a `dev` connector. A strict relying party
// (openid-client v6) talks to hubauth; headless Chromium (playwright-core, Debian's chromium) is
// the person: hubauth's chooser, the upstream's login + consent pages, back to the RP.
//
// The RP never listens on its redirect_uri: the browser context intercepts that URL and the test
// reads code/state/iss from it. The upstream records what hubauth sent it (GET /__e2e/requests).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { launchChromium, screenshotter } from './lib/browser.mjs';
import * as oidc from 'openid-client';
import {
  freePort, tempDir, run, artifactPath, HUBAUTH_BIN,
} from './lib/harness.mjs';
import {
  startUpstream, generateJwks, startHubauthServe, oidcConnectorToml, tomlStr, tomlList, UPSTREAM_ACCOUNTS,
} from './lib/upstream-oidc.mjs';

const RP_CLIENT_ID = 'e2e-rp';
const RP_SECRET = randomBytes(24).toString('hex');
const RP_REDIRECT = 'http://127.0.0.1:9/rp/callback'; // intercepted in the browser, never served
const SCOPE = 'openid profile email groups offline_access';
const UPSTREAM_NAME = 'University login';
const DEV_NAME = 'Staff accounts';
const DEV_USER = { username: 'dana', password: 'dana-staff-pass', groups: ['staff'] };

let upstream; let hubauth; let hubauthPort; let workDir; let browser; let rp;
let cryptKey; let devHash;
let aliceSub; // hubauth's sub for alice: must stay the same across logins

// ------------------------------------------------------------------ hubauth config

function hubauthToml({ connectorExtra = {}, groupsClaim = 'groups' } = {}) {
  return `# written by e2e/upstream-oidc.test.mjs
issuer = ${tomlStr(`http://127.0.0.1:${hubauthPort}`)}
listen = ${tomlStr(`127.0.0.1:${hubauthPort}`)}

[storage]
url = "sqlite://hubauth.db"

[[clients]]
id = ${tomlStr(RP_CLIENT_ID)}
name = "E2E relying party"
secret = { env = "E2E_RP_SECRET" }
redirect_uris = [${tomlStr(RP_REDIRECT)}]

${oidcConnectorToml(upstream, { name: UPSTREAM_NAME, groupsClaim, extra: connectorExtra })}
[[connectors]]
type = "dev"
id = "staff"
name = ${tomlStr(DEV_NAME)}

[[connectors.users]]
username = ${tomlStr(DEV_USER.username)}
password_hash = ${tomlStr(devHash)}
name = "Dana Staff"
email = "dana@example.org"
groups = ${tomlList(DEV_USER.groups)}
`;
}

async function startBroker(name, opts) {
  hubauth = await startHubauthServe({
    name,
    dir: workDir,
    port: hubauthPort,
    toml: hubauthToml(opts),
    env: {
      HUBAUTH_CRYPT_KEY: cryptKey,
      HUBAUTH_UPSTREAM_SECRET: upstream.clientSecret,
      E2E_RP_SECRET: RP_SECRET,
    },
  });
  rp = await oidc.discovery(new URL(hubauth.issuer), RP_CLIENT_ID, RP_SECRET, oidc.ClientSecretBasic(RP_SECRET), {
    execute: [oidc.allowInsecureRequests],
  });
}

// ------------------------------------------------------------------ browser helpers

const numberedScreenshot = screenshotter('up');
/** `name.png` keeps its fixed name; any other name becomes a numbered `up-NN-name.png`. */
const screenshot = (page, name) =>
  numberedScreenshot(page, name, name.endsWith('.png') ? artifactPath(name) : undefined);

/** Fresh browser context: no cookies; the RP's redirect_uri is intercepted; main-frame documents logged. */
async function newContext(label) {
  const context = await browser.newContext();
  // The upstream's dev pages @import a web font; there is no internet here.
  await context.route(/fonts\.(googleapis|gstatic)\.com/, (r) => r.abort());
  const rpHits = [];
  await context.route((u) => u.href.startsWith(RP_REDIRECT), (route) => {
    rpHits.push(route.request().url());
    route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>RP</title><p>RP callback reached</p>' });
  });
  const page = await context.newPage();
  const log = [];
  const docs = []; // main-frame document responses, in order
  page.on('response', (r) => {
    log.push(`${r.request().method()} ${r.url()} -> ${r.status()}`);
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) {
      docs.push({ url: r.url(), status: r.status(), contentType: r.headers()['content-type'] || '' });
    }
  });
  page.on('console', (m) => log.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => log.push(`[pageerror] ${e.message}`));
  const close = async () => {
    writeFileSync(artifactPath(`up-browser-${label}.log`), log.join('\n') + '\n');
    await context.close();
  };
  return { context, page, docs, rpHits, close };
}

async function newAuthRequest(extra = {}) {
  const codeVerifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(rp, {
    redirect_uri: RP_REDIRECT,
    scope: SCOPE,
    code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  return { url, codeVerifier, state, nonce };
}

/** Describe where the page is, for assertion messages. */
async function where(page) {
  let text = '';
  try { text = (await page.textContent('body'))?.replace(/\s+/g, ' ').slice(0, 600) ?? ''; } catch { /* gone */ }
  return `at ${page.url()}: "${text}"; hubauth log: ${hubauth.proc.logFile}`;
}

/**
 * On the upstream's devInteractions login page: log in as `user` (any password works), consent
 * if asked, and follow the redirects back through hubauth to the RP. Returns the RP callback URL.
 */
async function upstreamLoginToRp(page, ctx, user, label) {
  const login = page.locator('input[name="login"]');
  await login.waitFor({ timeout: 20_000 }).catch(async () => {
    assert.fail(`expected the upstream's login page ${await where(page)}`);
  });
  assert.equal(new URL(page.url()).origin, upstream.issuer, 'the login page is the upstream\'s');
  await login.fill(user);
  await page.fill('input[name="password"]', `${user}-any-password`);
  await screenshot(page, `${label}-upstream-login`);
  await page.locator('button[type="submit"]').click();
  const consent = page.locator('input[name="prompt"][value="consent"]');
  const outcome = await Promise.race([
    consent.waitFor({ state: 'attached', timeout: 20_000 }).then(() => 'consent', () => null),
    page.waitForURL((u) => !u.href.startsWith(upstream.issuer), { timeout: 20_000 }).then(() => 'left', () => null),
  ]);
  if (outcome === 'consent') {
    await screenshot(page, `${label}-upstream-consent`);
    await page.locator('form:has(input[name="prompt"][value="consent"]) button[type="submit"]').click();
  }
  await page.waitForURL((u) => u.href.startsWith(RP_REDIRECT), { timeout: 20_000 }).catch(async () => {
    await screenshot(page, `${label}-stuck`);
    writeFileSync(artifactPath(`up-${label}-stuck.html`), await page.content().catch(() => ''));
    assert.fail(`expected to land on the RP's redirect_uri after the upstream login; ${await where(page)}`);
  });
  assert.equal(ctx.rpHits.length, 1, 'exactly one redirect to the RP');
  return new URL(ctx.rpHits[0]);
}

/** Check the RP callback (state, iss, code) and exchange the code at hubauth. */
async function exchange(cbUrl, req) {
  assert.equal(cbUrl.searchParams.get('error'), null, `RP callback carries an error: ${cbUrl}`);
  assert.ok(cbUrl.searchParams.get('code'), `RP callback carries a code: ${cbUrl}`);
  assert.equal(cbUrl.searchParams.get('state'), req.state, 'state echoed to the RP');
  assert.equal(cbUrl.searchParams.get('iss'), hubauth.issuer, 'iss (RFC 9207) is hubauth');
  const tokens = await oidc.authorizationCodeGrant(rp, cbUrl, {
    pkceCodeVerifier: req.codeVerifier, expectedState: req.state, expectedNonce: req.nonce, idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await oidc.fetchUserInfo(rp, tokens.access_token, claims.sub);
  return { tokens, claims, userinfo };
}

/** A whole upstream login for `user` through hubauth with connector=upstream; returns exchange(). */
async function loginViaUpstream(user, label, extra = { connector: 'upstream' }) {
  const ctx = await newContext(label);
  try {
    const req = await newAuthRequest(extra);
    await ctx.page.goto(req.url.href);
    const cb = await upstreamLoginToRp(ctx.page, ctx, user, label);
    return { ...(await exchange(cb, req)), docs: ctx.docs };
  } finally {
    await ctx.close();
  }
}

function assertAlice({ claims, userinfo }, what) {
  assert.equal(claims.iss, hubauth.issuer, `${what}: ID token iss is hubauth`);
  assert.equal(claims.aud, RP_CLIENT_ID, `${what}: ID token aud is the RP`);
  assert.equal(claims.preferred_username, 'alice', `${what}: ID token preferred_username`);
  assert.deepEqual(claims.groups, ['upstream:physics', 'upstream:hpc-users'], `${what}: ID token groups = the upstream's, in its connector's namespace`);
  assert.equal(userinfo.sub, claims.sub, `${what}: userinfo sub = ID token sub`);
  assert.equal(userinfo.preferred_username, 'alice', `${what}: userinfo preferred_username`);
  assert.deepEqual(userinfo.groups, ['upstream:physics', 'upstream:hpc-users'], `${what}: userinfo groups`);
  assert.notEqual(claims.sub, 'alice', `${what}: hubauth's sub is its own, not the upstream username`);
  if (aliceSub) assert.equal(claims.sub, aliceSub, `${what}: alice keeps the same hubauth sub`);
  else aliceSub = claims.sub;
}

/**
 * hubauth fetches an upstream's JWKS again as soon as an ID token names a key id it has not seen
 * (src/connectors/oidc.rs), so a rotation works on the very next sign-in, with no wait.
 */
async function restartUpstreamWithNewKey(changes) {
  await upstream.restart(changes);
}

// ------------------------------------------------------------------ tests

describe('hubauth `oidc` connector against a real upstream OpenID provider (oidc-provider v9)', { timeout: 170_000 }, () => {
  before(async () => {
    workDir = tempDir('upstream-oidc');
    hubauthPort = await freePort();
    cryptKey = randomBytes(32).toString('hex');
    devHash = (await run(HUBAUTH_BIN, ['hash-password', '--password', DEV_USER.password])).stdout.trim();
    upstream = await startUpstream({
      name: 'up-upstream',
      redirectUris: [`http://127.0.0.1:${hubauthPort}/callback/upstream`],
      jwks: generateJwks({ kid: 'upstream-key-1' }),
    });
    await startBroker('up-hubauth');
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await hubauth?.stop();
    await upstream?.stop();
    if (workDir && !process.env.E2E_KEEP_TMP) rmSync(workDir, { recursive: true, force: true });
  });

  it('the chooser lists both connectors; "University login" → upstream login + consent → RP gets alice with her upstream groups', async () => {
    const ctx = await newContext('chooser-alice');
    const { page } = ctx;
    try {
      const req = await newAuthRequest();
      await page.goto(req.url.href);
      assert.equal(new URL(page.url()).origin, hubauth.issuer, `the first page is hubauth's (${page.url()})`);
      const upLink = page.getByRole('link', { name: new RegExp(UPSTREAM_NAME) });
      const devLink = page.getByRole('link', { name: new RegExp(DEV_NAME) });
      await upLink.first().waitFor({ timeout: 10_000 }).catch(async () => assert.fail(`no chooser link "${UPSTREAM_NAME}" ${await where(page)}`));
      assert.equal(await upLink.count(), 1, `one link named "${UPSTREAM_NAME}"`);
      assert.equal(await devLink.count(), 1, `one link named "${DEV_NAME}"`);
      writeFileSync(artifactPath('up-chooser.html'), await page.content());
      await screenshot(page, 'chooser.png');

      await upLink.click();
      const cb = await upstreamLoginToRp(page, ctx, 'alice', 'chooser-alice');
      const result = await exchange(cb, req);
      writeFileSync(artifactPath('up-alice-claims.json'), JSON.stringify({ id_token: result.claims, userinfo: result.userinfo }, null, 2));
      assertAlice(result, 'alice via chooser');
      // The standard profile/email claims the upstream released (via its userinfo only:
      // oidc-provider's ID token of a code flow has just sub) are carried over.
      for (const k of ['name', 'email', 'email_verified']) {
        assert.equal(result.userinfo[k], UPSTREAM_ACCOUNTS.alice[k], `userinfo.${k} from the upstream's userinfo`);
        assert.equal(result.claims[k], UPSTREAM_ACCOUNTS.alice[k], `ID token ${k} from the upstream's userinfo`);
      }

      // What hubauth sent the upstream (the upstream's own request log).
      const reqs = await upstream.requests();
      writeFileSync(artifactPath('up-upstream-requests-1.json'), JSON.stringify(reqs, null, 2));
      const auth = reqs.find((r) => r.path === '/auth' && r.method === 'GET');
      assert.ok(auth, 'the browser came to the upstream /auth');
      const q = auth.query;
      assert.equal(q.client_id, 'hubauth');
      assert.equal(q.response_type, 'code');
      assert.equal(q.redirect_uri, `${hubauth.issuer}/callback/upstream`, 'redirect_uri = {issuer}/callback/upstream');
      assert.equal(q.code_challenge_method, 'S256', 'PKCE S256');
      assert.match(q.code_challenge || '', /^[A-Za-z0-9_-]{43}$/, 'S256 code_challenge');
      assert.ok(q.state && q.state.length >= 16, 'state sent upstream');
      assert.ok(q.nonce && q.nonce.length >= 16, 'nonce sent upstream');
      assert.ok((q.scope || '').split(' ').includes('openid'), 'scope has openid');
      const token = reqs.filter((r) => r.path === '/token');
      assert.equal(token.length, 1, 'one token request');
      assert.equal(token[0].status, 200, 'the upstream accepted the token request');
      assert.equal(token[0].authorization?.scheme, 'Basic', 'client_secret_basic by default');
      assert.equal(token[0].authorization?.client_id, 'hubauth');
      assert.equal(token[0].form?.grant_type, 'authorization_code');
      assert.ok(token[0].form?.code_verifier, 'code_verifier sent');
      assert.equal(token[0].form?.client_secret, undefined, 'no client_secret in the body with client_secret_basic');
      assert.ok(reqs.some((r) => r.path === '/jwks' && r.status === 200), 'hubauth fetched the upstream JWKS');
      assert.ok(reqs.some((r) => r.path === '/me' && r.status === 200), 'hubauth fetched the upstream userinfo');

      // The RP's refresh grant at hubauth keeps identity and groups.
      assert.ok(result.tokens.refresh_token, 'hubauth issued a refresh token (offline_access)');
      const refreshed = await oidc.refreshTokenGrant(rp, result.tokens.refresh_token);
      const rc = refreshed.claims();
      assert.equal(rc.sub, result.claims.sub, 'refresh: same sub');
      assert.deepEqual(rc.groups, ['upstream:physics', 'upstream:hpc-users'], 'refresh: groups kept');
      assert.notEqual(refreshed.refresh_token, result.tokens.refresh_token, 'refresh token rotated');
    } finally {
      await ctx.close();
    }
  });

  it('the dev connector on the same chooser still shows hubauth\'s own password form', async () => {
    const ctx = await newContext('chooser-dev');
    const { page } = ctx;
    try {
      const req = await newAuthRequest();
      await page.goto(req.url.href);
      await page.getByRole('link', { name: new RegExp(DEV_NAME) }).click();
      await page.waitForSelector('#username', { timeout: 10_000 }).catch(async () => assert.fail(`no password form ${await where(page)}`));
      assert.equal(new URL(page.url()).origin, hubauth.issuer, 'the password form is hubauth\'s');
      await page.fill('#username', DEV_USER.username);
      await page.fill('#password', DEV_USER.password);
      await page.locator('form[method="post" i] [type="submit"], form[method="post" i] button:not([type])').first().click();
      await page.waitForURL((u) => u.href.startsWith(RP_REDIRECT), { timeout: 15_000 }).catch(async () => assert.fail(`dev login did not reach the RP ${await where(page)}`));
      const { claims } = await exchange(new URL(ctx.rpHits[0]), req);
      assert.equal(claims.preferred_username, DEV_USER.username);
      assert.deepEqual(claims.groups, DEV_USER.groups);
    } finally {
      await ctx.close();
    }
  });

  it('connector=upstream skips the chooser: the first page shown is the upstream\'s; the upstream callback is single-use', async () => {
    const ctx = await newContext('skip-chooser');
    const { page } = ctx;
    try {
      const req = await newAuthRequest({ connector: 'upstream' });
      await page.goto(req.url.href);
      const cb = await upstreamLoginToRp(page, ctx, 'alice', 'skip-chooser');
      const docs = ctx.docs.map((d) => `${d.status} ${d.url}`);
      const firstPage = ctx.docs.find((d) => d.status < 300 || d.status >= 400);
      assert.equal(new URL(firstPage.url).origin, upstream.issuer,
        `first rendered page is the upstream's, not hubauth's chooser (documents: ${JSON.stringify(docs)})`);
      assertAlice(await exchange(cb, req), 'alice via connector=upstream');

      // The browser's trip back from the upstream, replayed in the same browser: no second code.
      const upstreamCallback = ctx.docs.find((d) => d.url.startsWith(`${hubauth.issuer}/callback/upstream?`));
      assert.ok(upstreamCallback, `the browser came back through hubauth's callback (${JSON.stringify(docs)})`);
      const again = await page.goto(upstreamCallback.url);
      await screenshot(page, 'callback-replay');
      assert.ok(again.status() >= 400 && again.status() < 500, `replayed upstream callback → 4xx page (got ${again.status()} at ${page.url()})`);
      assert.equal(new URL(page.url()).origin, hubauth.issuer, 'the replay stays on hubauth');
      assert.equal(ctx.rpHits.length, 1, 'no second redirect to the RP');
    } finally {
      await ctx.close();
    }
  });

  it('a callback with an unknown state (or none) is refused with an HTML page, no redirect', async () => {
    for (const qs of ['state=not-a-real-state&code=abc', 'code=abc', 'state=forged&error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E']) {
      const r = await fetch(`${hubauth.issuer}/callback/upstream?${qs}`, { redirect: 'manual' });
      const body = await r.text();
      assert.ok(r.status >= 400 && r.status < 500, `${qs}: 4xx (got ${r.status})`);
      assert.equal(r.headers.get('location'), null, `${qs}: no redirect`);
      assert.match(r.headers.get('content-type') || '', /text\/html/, `${qs}: HTML`);
      assert.ok(!body.includes('<script>alert(1)'), `${qs}: upstream text is never rendered raw`);
    }
  });

  it('upstream key rotation (restart with a new RS256 key, new kid): login still works, hubauth re-fetched the JWKS', async () => {
    const oldKid = upstream.kids[0];
    await restartUpstreamWithNewKey({ jwks: generateJwks({ kid: 'upstream-key-2' }) });
    assert.notEqual(upstream.kids[0], oldKid);
    const published = await (await fetch(`${upstream.issuer}/jwks`)).json();
    assert.deepEqual(published.keys.map((k) => k.kid), ['upstream-key-2'], 'the upstream now publishes only the new key');
    await upstream.clearRequests();

    const result = await loginViaUpstream('alice', 'rotated-rs256');
    assertAlice(result, 'alice after key rotation');
    const reqs = await upstream.requests();
    writeFileSync(artifactPath('up-upstream-requests-rotation.json'), JSON.stringify(reqs, null, 2));
    assert.ok(reqs.some((r) => r.path === '/jwks'), 'hubauth fetched the new JWKS');
  });

  it('upstream switches to an ES256 key: login still works', async () => {
    await restartUpstreamWithNewKey({ jwks: generateJwks({ alg: 'ES256', kid: 'upstream-key-3-es' }), idTokenAlg: 'ES256' });
    const result = await loginViaUpstream('alice', 'rotated-es256');
    assertAlice(result, 'alice with an ES256-signing upstream');
  });

  it('wrong client secret at the upstream (invalid_client): hubauth shows an error page naming the provider, no code', async () => {
    const goodSecret = upstream.clientSecret;
    await upstream.restart({ clientSecret: randomBytes(24).toString('hex') });
    const ctx = await newContext('bad-secret');
    const { page } = ctx;
    try {
      const req = await newAuthRequest({ connector: 'upstream' });
      await page.goto(req.url.href);
      const login = page.locator('input[name="login"]');
      await login.waitFor({ timeout: 20_000 });
      await login.fill('alice');
      await page.fill('input[name="password"]', 'x');
      await page.locator('button[type="submit"]').click();
      await page.locator('input[name="prompt"][value="consent"]').waitFor({ state: 'attached', timeout: 20_000 });
      await page.locator('form:has(input[name="prompt"][value="consent"]) button[type="submit"]').click();
      await page.waitForURL((u) => u.origin === hubauth.issuer, { timeout: 20_000 }).catch(async () => assert.fail(`expected hubauth's error page ${await where(page)}`));
      await page.waitForLoadState('load');
      await screenshot(page, 'bad-secret-error');
      const last = ctx.docs.at(-1);
      assert.ok(last.status >= 500 && last.status < 600, `upstream misconfiguration → 5xx page (got ${last.status} for ${last.url})`);
      const text = (await page.textContent('body')).replace(/\s+/g, ' ');
      assert.ok(text.includes(UPSTREAM_NAME), `the page names "${UPSTREAM_NAME}": "${text.slice(0, 400)}"`);
      assert.ok(!text.includes(goodSecret), 'no secret on the page');
      assert.deepEqual(ctx.rpHits, [], 'nothing reached the RP');
      const token = (await upstream.requests()).filter((r) => r.path === '/token');
      assert.equal(token.length, 1, 'hubauth tried the token endpoint once');
      assert.equal(token[0].status, 401, 'the upstream refused the client (invalid_client)');
    } finally {
      await ctx.close();
      await upstream.restart({ clientSecret: goodSecret });
    }
  });

  it('abort at the upstream (error=access_denied): hubauth shows an error page naming the provider, the RP gets no code', async () => {
    const ctx = await newContext('abort');
    const { page } = ctx;
    try {
      const req = await newAuthRequest({ connector: 'upstream' });
      await upstream.clearRequests();
      // The upstream's error_description is shown on hubauth's page: make it markup (the state
      // stays valid) and check it is rendered as text.
      const injected = '<b id="injected">x</b><script>window.__injected=1</script>';
      await upstream.overrideErrorDescription(`End-User aborted ${injected}`);
      await page.goto(req.url.href);
      await page.locator('input[name="login"]').waitFor({ timeout: 20_000 });
      await page.locator('a', { hasText: 'Cancel' }).click();
      await page.waitForURL((u) => u.origin === hubauth.issuer, { timeout: 20_000 }).catch(async () => assert.fail(`expected to be back at hubauth ${await where(page)}`));
      await page.waitForLoadState('load');
      await upstream.overrideErrorDescription(null);
      const cbDoc = ctx.docs.find((d) => d.url.startsWith(`${hubauth.issuer}/callback/upstream?`));
      assert.equal(new URL(cbDoc.url).searchParams.get('error'), 'access_denied', 'the upstream answered error=access_denied');
      assert.ok(new URL(cbDoc.url).searchParams.get('error_description').includes(injected), 'the markup was sent');
      await screenshot(page, 'upstream-error.png');
      writeFileSync(artifactPath('up-upstream-error.html'), await page.content());
      const last = ctx.docs.at(-1);
      assert.equal(new URL(last.url).origin, hubauth.issuer, `the last page is hubauth's (${last.url})`);
      assert.ok(last.status >= 400 && last.status < 600, `the error page has an error status (got ${last.status} for ${last.url})`);
      assert.match(last.contentType, /text\/html/, 'an HTML page');
      const text = (await page.textContent('body')).replace(/\s+/g, ' ');
      assert.ok(text.includes(UPSTREAM_NAME), `the page names "${UPSTREAM_NAME}": "${text.slice(0, 400)}"`);
      assert.match(text, /try again|sign in again|log in again|start again|contact|administrator|go back/i, `the page says what to do: "${text.slice(0, 400)}"`);
      assert.equal(await page.locator('#injected').count(), 0, 'the upstream\'s error_description is not rendered as HTML');
      if (!text.includes('<b id="injected">')) console.log('# note: hubauth does not show the upstream\'s error_description (or truncates it)');
      assert.equal(await page.evaluate(() => window.__injected), undefined, 'no script from the upstream ran');
      const codes = ctx.rpHits.filter((u) => new URL(u).searchParams.get('code'));
      assert.deepEqual(codes, [], 'no code reached the RP');
      const upReqs = await upstream.requests();
      assert.ok(upReqs.some((r) => r.path.startsWith('/auth')), 'the abort went through the upstream\'s /auth');
      assert.ok(!upReqs.some((r) => r.path === '/token'), 'hubauth did not call the upstream token endpoint');

      // "Try again" resumes the same authorization request: a second go ends at the RP with a code.
      const retry = page.locator('a, button').filter({ hasText: /try again/i }).first();
      await retry.waitFor({ timeout: 5_000 }).catch(async () => assert.fail(`no "Try again" on the error page ${await where(page)}`));
      await retry.click();
      const choice = page.getByRole('link', { name: new RegExp(UPSTREAM_NAME) });
      const next = await Promise.race([
        choice.waitFor({ timeout: 15_000 }).then(() => 'chooser', () => null),
        page.locator('input[name="login"]').waitFor({ timeout: 15_000 }).then(() => 'upstream', () => null),
      ]);
      assert.ok(next, `"Try again" leads to the chooser or the upstream ${await where(page)}`);
      if (next === 'chooser') await choice.click();
      const cb = await upstreamLoginToRp(page, ctx, 'alice', 'abort-retry');
      assertAlice(await exchange(cb, req), 'alice after "Try again"');
    } finally {
      await ctx.close();
    }
  });

  it('bob (no upstream groups) gets groups [] or none', async () => {
    const result = await loginViaUpstream('bob', 'bob');
    writeFileSync(artifactPath('up-bob-claims.json'), JSON.stringify({ id_token: result.claims, userinfo: result.userinfo }, null, 2));
    assert.equal(result.claims.preferred_username, 'bob');
    assert.notEqual(result.claims.sub, aliceSub, 'bob has his own sub');
    for (const [what, c] of [['ID token', result.claims], ['userinfo', result.userinfo]]) {
      assert.ok(c.groups === undefined || (Array.isArray(c.groups) && c.groups.length === 0),
        `${what} groups for bob: [] or absent (got ${JSON.stringify(c.groups)})`);
    }
  });

  it('token_endpoint_auth = "client_secret_post" (upstream accepts only that): login works, secret in the body', async () => {
    await hubauth.stop();
    await upstream.restart({ tokenEndpointAuthMethod: 'client_secret_post' });
    await startBroker('up-hubauth-post', { connectorExtra: { token_endpoint_auth: '"client_secret_post"' } });
    const result = await loginViaUpstream('alice', 'secret-post');
    assertAlice(result, 'alice with client_secret_post');
    const token = (await upstream.requests()).filter((r) => r.path === '/token');
    assert.equal(token.length, 1);
    assert.equal(token[0].authorization, null, 'no Authorization header with client_secret_post');
    assert.ok(token[0].form?.client_secret, 'client_secret in the body');
    assert.equal(token[0].form?.client_id, 'hubauth', 'client_id in the body');
  });

  it('groups_claim as a dot path ("realm_access.roles") reads a nested claim', async () => {
    await hubauth.stop();
    await startBroker('up-hubauth-dotpath', {
      groupsClaim: 'realm_access.roles',
      connectorExtra: { token_endpoint_auth: '"client_secret_post"' },
    });
    const { claims, userinfo } = await loginViaUpstream('alice', 'dot-path');
    assert.equal(claims.preferred_username, 'alice');
    assert.equal(claims.sub, aliceSub, 'same hubauth sub after a broker restart');
    const roles = UPSTREAM_ACCOUNTS.alice.realm_access.roles.map((r) => `upstream:${r}`);
    assert.deepEqual(claims.groups, roles, 'groups from realm_access.roles');
    assert.deepEqual(userinfo.groups, roles);
  });
});
