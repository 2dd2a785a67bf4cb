// Token custody end to end: hubauth keeps each person's upstream tokens and hands out fresh upstream
// access tokens by RFC 8693 token exchange; service accounts use client_credentials.
//
//  1. With a real upstream (oidc-provider v9, e2e/upstream/server.mjs) issuing 10-second access
//     tokens and ROTATING refresh tokens, and hubauth's `upstream_refresh_skew = "58s"` (longer than
//     the tokens live, like a Keycloak realm with 1-minute tokens and the default skew; hubauth caps
//     it at half their lifetime): alice signs in (openid-client as RP, headless Chromium as alice);
//     once her upstream token is due, 100 concurrent exchanges by the confidential client `spawner` cause exactly ONE
//     refresh_token grant at the upstream and all get the same fresh token, which the upstream's
//     userinfo accepts. Then the upstream ends alice's sign-in (POST /__e2e/accounts/alice/end-session)
//     and the next exchange answers 400 login_required naming the provider; alice's hubauth tokens
//     are revoked (userinfo 401, refresh invalid_grant, audit upstream_session_ended).
//  2. A real JupyterHub 6.1 (GenericOAuthenticator from `hubauth jupyterhub-config`, configurable-
//     http-proxy, SimpleLocalProcessSpawner): alice logs in through hubauth, the hub spawns
//     e2e/singleuser/fake_server.py for her, which runs `hubauth token` with its real
//     JUPYTERHUB_API_TOKEN (public client `notebooks`) and gets an upstream token the upstream
//     accepts. The hub's `GET /hub/api/user` answer for that token (kind, name, scopes, session_id)
//     shows the exchange scope `hubauth jupyterhub-config` put on server tokens. Tokens not meant for
//     exchange are refused with invalid_scope: the identify-only OAuth token the hub issues to a
//     service (e2e-viewer, through the hub's own OAuth flow in alice's browser) and a personal token
//     with identify scopes only; a personal token with the exchange scope (which the fragment lets
//     users hold) is accepted. The hub stops the server (REST API), and the same JUPYTERHUB_API_TOKEN
//     is refused.
//  3. Authlib (Python, e2e/authlib_service.py) as a strict client of the service account `jobs`:
//     client_credentials, introspection (active, sub, scope, exp), invalid_scope for a wider scope,
//     revocation → inactive.
//  4. No token or secret this file saw appears in hubauth's log (HUBAUTH_LOG=hubauth=debug,
//     tower_http=debug) or the hub's.
//
// Everything runs on 127.0.0.1 and is killed in after() (also on failure).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync, readFileSync, existsSync, rmSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { launchChromium, screenshotter, where as whereIn } from './lib/browser.mjs';
import * as oidc from 'openid-client';
import {
  freePort, tempDir, run, artifactPath, killPidFile, HUBAUTH_BIN, E2E_DIR,
} from './lib/harness.mjs';
import { startJupyterHub, VENV_BIN } from './lib/jupyterhub.mjs';
import {
  startUpstream, generateJwks, startHubauthServe, oidcConnectorToml, tomlStr, upstreamDevLogin,
} from './lib/upstream-oidc.mjs';

const PREFIX = 'cust'; // artifact prefix
const PYTHON = path.join(VENV_BIN, 'python');

const CONNECTOR = 'upstream';
const UPSTREAM_NAME = 'University login';
const UPSTREAM_TTL = 10; // s: the upstream's access tokens
const SKEW = 58; // s: hubauth's [tokens] upstream_refresh_skew, longer than the tokens live
// hubauth caps the skew at half a token's lifetime: a token is due for a refresh this long after issue.
const DUE_AFTER = UPSTREAM_TTL - Math.min(SKEW, Math.floor(UPSTREAM_TTL / 2));
const CONCURRENCY = 100;
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const RP_CLIENT_ID = 'e2e-rp';
const RP_REDIRECT = 'http://127.0.0.1:9/rp/callback'; // intercepted in the browser, never served
const RP_SCOPE = 'openid profile email groups offline_access';
const HUB_TOKEN_TYPE = 'urn:hubauth:params:oauth:token-type:jupyterhub-api-token';
const EXCHANGE_SCOPE = 'custom:hubauth:exchange'; // [clients.token_exchange] jupyterhub_scope default
// A JupyterHub OAuth service: the hub gives it an identify-only token for whoever visits it.
const VIEWER_CLIENT = 'service-e2e-viewer';
const VIEWER_REDIRECT = 'http://127.0.0.1:9/services/e2e-viewer/oauth_callback'; // never served: the test reads the redirect

const SECRETS = {
  rp: randomBytes(24).toString('hex'),
  hub: randomBytes(24).toString('hex'),
  spawner: randomBytes(24).toString('hex'),
  jobs: randomBytes(24).toString('hex'),
  cryptKey: randomBytes(32).toString('hex'),
  hubCryptKey: randomBytes(32).toString('hex'),
  hubAdminToken: randomBytes(24).toString('hex'),
  viewer: randomBytes(24).toString('hex'),
};

/** Every token and secret this file sees, by label; checked against the logs at the end. */
const seen = new Map();
// Every label given, also when two scenarios see the same value (an upstream token handed out
// twice, from the cache, is one value with two labels).
const labelsSeen = new Set();
function saw(label, value) {
  if (typeof value === 'string' && value.length >= 8) {
    seen.set(value, label);
    labelsSeen.add(label);
  }
}
for (const [k, v] of Object.entries(SECRETS)) saw(`secret ${k}`, v);
const basic = (id, secret) => Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');
saw('Basic credentials of spawner', basic('spawner', SECRETS.spawner));
saw('Basic credentials of jobs', basic('jobs', SECRETS.jobs));
saw('Basic credentials of the RP', basic(RP_CLIENT_ID, SECRETS.rp));
saw('Basic credentials of the hub', basic('jupyterhub', SECRETS.hub));

let upstream; let hubauth; let hub; let hubUrl; let hubApiUrl; let workDir; let outDir; let browser;
let proxyPidFile; let rp; let meta; let upstreamMeta;

// ------------------------------------------------------------------ helpers

const screenshot = screenshotter(PREFIX);
const where = (page) => whereIn(page, PREFIX);

/** A fresh browser context; the RP's redirect_uri is intercepted; codes on the way are recorded. */
async function newContext(label, { baseURL } = {}) {
  const context = await browser.newContext(baseURL ? { baseURL } : {});
  // The upstream's dev pages @import a web font; there is no internet here.
  await context.route(/fonts\.(googleapis|gstatic)\.com/, (r) => r.abort());
  const rpHits = [];
  await context.route((u) => u.href.startsWith(RP_REDIRECT), (route) => {
    rpHits.push(route.request().url());
    route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>RP</title><p>RP callback reached</p>' });
  });
  const page = await context.newPage();
  const log = [];
  page.on('request', (r) => {
    // hubauth's upstream callback and any client callback carry authorization codes
    try {
      const code = new URL(r.url()).searchParams.get('code');
      if (code) saw(`authorization code in ${new URL(r.url()).pathname}`, code);
    } catch { /* not a URL */ }
  });
  page.on('response', (r) => log.push(`${r.request().method()} ${r.url().replace(/([?&](code|state)=)[^&]+/g, '$1…')} -> ${r.status()}`));
  page.on('console', (m) => log.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => log.push(`[pageerror] ${e.message}`));
  const close = async () => {
    writeFileSync(artifactPath(`${PREFIX}-browser-${label}.log`), log.join('\n') + '\n');
    await context.close();
  };
  return { context, page, rpHits, close };
}

/** At the upstream (devInteractions): log in as `user` (any password) and consent if asked. */
const upstreamLogin = (page, user, label) => upstreamDevLogin(page, {
  user,
  issuer: upstream.issuer,
  screenshot: (p, name) => screenshot(p, `${label}-${name}`),
  describe: () => where(page),
});

/** alice signs in at the RP through hubauth (connector=upstream); returns openid-client's tokens. */
async function rpLogin(user) {
  const ctx = await newContext(`rp-${user}`);
  try {
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(rp, {
      redirect_uri: RP_REDIRECT,
      scope: RP_SCOPE,
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      connector: CONNECTOR,
    });
    await ctx.page.goto(url.href);
    await upstreamLogin(ctx.page, user, `rp-${user}`);
    await ctx.page.waitForURL((u) => u.href.startsWith(RP_REDIRECT), { timeout: 20_000 })
      .catch(async () => assert.fail(`expected to land on the RP's redirect_uri ${await where(ctx.page)}`));
    assert.equal(ctx.rpHits.length, 1, 'exactly one redirect to the RP');
    const tokens = await oidc.authorizationCodeGrant(rp, new URL(ctx.rpHits[0]), {
      pkceCodeVerifier: codeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
    });
    saw('hubauth access token (RP)', tokens.access_token);
    saw('hubauth refresh token (RP)', tokens.refresh_token);
    saw('hubauth ID token (RP)', tokens.id_token);
    return tokens;
  } finally {
    await ctx.close();
  }
}

/** POST /token at hubauth: an RFC 8693 exchange by `spawner` (client_secret_basic). */
async function spawnerExchange(subjectToken) {
  const res = await fetch(meta.token_endpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${basic('spawner', SECRETS.spawner)}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({
      grant_type: EXCHANGE,
      subject_token: subjectToken,
      subject_token_type: AT_TYPE,
      audience: CONNECTOR,
    }),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  if (json?.access_token) saw('upstream access token (exchange)', json.access_token);
  return { status: res.status, json, text, headers: res.headers };
}

/** POST /token at hubauth: a notebook's exchange of a JupyterHub token by the public client `notebooks`. */
async function notebookExchange(hubToken) {
  const res = await fetch(meta.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: EXCHANGE,
      subject_token: hubToken,
      subject_token_type: HUB_TOKEN_TYPE,
      audience: CONNECTOR,
      client_id: 'notebooks',
    }),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  if (json?.access_token) saw('upstream access token (notebook exchange)', json.access_token);
  return { status: res.status, json, text };
}

/**
 * The identify-only OAuth token the hub issues to the service e2e-viewer when alice visits it: her
 * hub session (the browser context's cookies) at the hub's authorize endpoint, then the code at the
 * hub's token endpoint with the service's credentials.
 */
async function viewerOAuthToken(context) {
  const cookie = (await context.cookies(`${hubUrl}/hub/api/oauth2/authorize`)).map((c) => `${c.name}=${c.value}`).join('; ');
  const authorize = new URL(`${hubUrl}/hub/api/oauth2/authorize`);
  authorize.search = new URLSearchParams({ client_id: VIEWER_CLIENT, redirect_uri: VIEWER_REDIRECT, response_type: 'code', state: 'viewer-state' });
  const sent = await fetch(authorize, { headers: { cookie }, redirect: 'manual' });
  await sent.arrayBuffer();
  const location = sent.headers.get('location') ?? '';
  assert.equal(sent.status, 302, `the hub sends alice back to the service (got ${sent.status})`);
  assert.ok(location.startsWith(VIEWER_REDIRECT), 'to its redirect_uri');
  const code = new URL(location).searchParams.get('code');
  assert.ok(code, 'with a code');
  const res = await fetch(`${hubUrl}/hub/api/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: VIEWER_REDIRECT, client_id: VIEWER_CLIENT, client_secret: SECRETS.viewer,
    }),
  });
  const body = await res.json();
  assert.equal(res.status, 200, `the hub's token endpoint gives the service a token: ${JSON.stringify(body.error ?? res.status)}`);
  saw('JupyterHub OAuth token of the service e2e-viewer', body.access_token);
  return body.access_token;
}

async function upstreamUserinfo(token) {
  const res = await fetch(upstreamMeta.userinfo_endpoint, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}

async function hubauthUserinfo(token) {
  const res = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${token}` } });
  await res.arrayBuffer();
  return res.status;
}

const refreshGrants = (reqs) => reqs.filter((r) => r.path === '/token' && r.form?.grant_type === 'refresh_token');

/** Sleep until just after the next whole second that is at least `ms` from `from` (hubauth's clock has 1 s resolution). */
async function waitUntilSecondAfter(from, ms) {
  const target = Math.ceil((from + ms) / 1000) * 1000 + 30;
  if (target > Date.now()) await sleep(target - Date.now());
}

async function hubApi(pathname, { method = 'GET', body, token = SECRETS.hubAdminToken } = {}) {
  const res = await fetch(`${hubUrl}/hub/api${pathname}`, {
    method,
    headers: { authorization: `token ${token}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}

async function eventually(fn, { timeoutMs = 30_000, intervalMs = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(intervalMs);
  }
  assert.fail(`${what}: not true after ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
}

/** hubauth's audit_events rows (the venv's Python sqlite3; the DB is in WAL mode). */
async function auditEvents(kind) {
  const script = `
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
db.row_factory = sqlite3.Row
print(json.dumps([dict(r) for r in db.execute("SELECT * FROM audit_events WHERE kind = ? ORDER BY id", (sys.argv[2],))]))
`;
  const { stdout } = await run(PYTHON, ['-c', script, path.join(workDir, 'hubauth.db'), kind]);
  return JSON.parse(stdout);
}

/** `hubauth token` as a notebook runs it: only the notebook's env, never a client secret. */
function hubauthToken(apiToken) {
  return new Promise((resolve) => {
    const child = spawn(HUBAUTH_BIN, ['token', '--connector', CONNECTOR], {
      env: {
        PATH: process.env.PATH,
        HUBAUTH_ISSUER: hubauth.issuer,
        HUBAUTH_CLIENT_ID: 'notebooks',
        JUPYTERHUB_API_TOKEN: apiToken,
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = ''; let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

/** SIGKILL the fake notebook server whose pid is in `file`, if that pid is still it (no pid reuse accidents). */
function killFakeServer(file) {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    if (!(pid > 1)) return;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmdline.includes('fake_server.py')) process.kill(pid, 'SIGKILL');
  } catch { /* no file, or the process is gone */ }
}

// ------------------------------------------------------------------ setup

describe('token custody: RFC 8693 exchange, a real JupyterHub\'s notebooks, service accounts', { timeout: 180_000 }, () => {
  before(async () => {
    workDir = tempDir('custody');
    outDir = path.join(workDir, 'singleuser-out');
    mkdirSync(outDir, { recursive: true });
    const hubPort = await freePort();
    const hubApiPort = await freePort();
    const proxyApiPort = await freePort();
    const hubauthPort = await freePort();
    hubUrl = `http://127.0.0.1:${hubPort}`;
    hubApiUrl = `http://127.0.0.1:${hubApiPort}/hub/api`;
    const issuer = `http://127.0.0.1:${hubauthPort}`;

    upstream = await startUpstream({
      name: `${PREFIX}-upstream`,
      redirectUris: [`${issuer}/callback/${CONNECTOR}`],
      jwks: generateJwks({ kid: 'custody-key-1' }),
      accessTokenTTL: UPSTREAM_TTL,
    });
    saw('upstream client secret', upstream.clientSecret);

    const toml = `# written by e2e/custody.test.mjs
issuer = ${tomlStr(issuer)}
listen = ${tomlStr(`127.0.0.1:${hubauthPort}`)}

[storage]
url = "sqlite://hubauth.db"

[tokens]
upstream_refresh_skew = "${SKEW}s"

[jupyterhub]
api_url = ${tomlStr(hubApiUrl)}

[[clients]]
id = ${tomlStr(RP_CLIENT_ID)}
name = "E2E relying party"
secret = { env = "E2E_RP_SECRET" }
redirect_uris = [${tomlStr(RP_REDIRECT)}]

[[clients]]
id = "jupyterhub"
name = "Custody Hub"
secret = { env = "HUBAUTH_CLIENT_SECRET" }
redirect_uris = [${tomlStr(`${hubUrl}/hub/oauth_callback`)}]
post_logout_redirect_uris = [${tomlStr(`${hubUrl}/hub/`)}]
[clients.hub]
allowed_groups = ["upstream:physics"]
admin_groups = ["hub-admins"]
secret_env = "HUBAUTH_CLIENT_SECRET"
connector = ${tomlStr(CONNECTOR)}

[[clients]]
id = "spawner"
secret = { env = "E2E_SPAWNER_SECRET" }
grant_types = ["token_exchange"]
redirect_uris = []
[clients.token_exchange]
audiences = [${tomlStr(CONNECTOR)}]
subject_token_types = ["access_token"]
subject_clients = [${tomlStr(RP_CLIENT_ID)}, "jupyterhub"]

[[clients]]
id = "notebooks"
public = true
grant_types = ["token_exchange"]
redirect_uris = []
[clients.token_exchange]
audiences = [${tomlStr(CONNECTOR)}]
subject_token_types = ["jupyterhub"]

[[clients]]
id = "jobs"
secret = { env = "E2E_JOBS_SECRET" }
grant_types = ["client_credentials"]
redirect_uris = []
[clients.service_account]
scopes = ["service-account", "jobs:read"]

${oidcConnectorToml(upstream, { id: CONNECTOR, name: UPSTREAM_NAME })}`;
    const env = {
      HUBAUTH_LOG: 'hubauth=debug,tower_http=debug',
      HUBAUTH_CRYPT_KEY: SECRETS.cryptKey,
      HUBAUTH_UPSTREAM_SECRET: upstream.clientSecret,
      HUBAUTH_CLIENT_SECRET: SECRETS.hub,
      E2E_RP_SECRET: SECRETS.rp,
      E2E_SPAWNER_SECRET: SECRETS.spawner,
      E2E_JOBS_SECRET: SECRETS.jobs,
    };
    hubauth = await startHubauthServe({ name: `${PREFIX}-hubauth`, dir: workDir, port: hubauthPort, toml, env });
    meta = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
    upstreamMeta = await (await fetch(`${upstream.issuer}/.well-known/openid-configuration`)).json();
    rp = await oidc.discovery(new URL(issuer), RP_CLIENT_ID, SECRETS.rp, oidc.ClientSecretBasic(SECRETS.rp), {
      execute: [oidc.allowInsecureRequests],
    });

    // The hub: `hubauth jupyterhub-config` + test-only settings (spawner = the fake notebook server).
    const { stdout: fragment } = await run(HUBAUTH_BIN, ['jupyterhub-config', '--config', hubauth.configPath, '--client', 'jupyterhub'], {
      env: { ...process.env, ...env },
    });
    const py = (v) => JSON.stringify(v);
    ({ proc: hub, proxyPidFile } = await startJupyterHub({
      name: PREFIX, workDir, fragment, hubUrl, hubApiPort, proxyApiPort,
      adminToken: SECRETS.hubAdminToken,
      adminScopes: ['admin:users', 'admin:auth_state', 'admin:servers', 'list:users', 'read:users', 'tokens'],
      secrets: [SECRETS.viewer],
      cryptKey: SECRETS.hubCryptKey,
      env: { HUBAUTH_CLIENT_SECRET: SECRETS.hub },
      extraConfig: `c.SimpleLocalProcessSpawner.home_dir_template = ${py(path.join(workDir, 'home', '{username}'))}
c.Spawner.cmd = [${py(PYTHON)}, ${py(path.join(E2E_DIR, 'singleuser', 'fake_server.py'))}]
c.Spawner.args = []
c.Spawner.http_timeout = 30
c.Spawner.start_timeout = 30
c.Spawner.environment = {
    'HUBAUTH_ISSUER': ${py(issuer)},
    'HUBAUTH_CLIENT_ID': 'notebooks',
    'HUBAUTH_BIN': ${py(HUBAUTH_BIN)},
    'E2E_CONNECTOR': ${py(CONNECTOR)},
    'E2E_OUT_DIR': ${py(outDir)},
}
c.JupyterHub.extra_user_scopes.add('access:services!service=e2e-viewer')
c.JupyterHub.services.append({
    'name': 'e2e-viewer',
    'oauth_client_id': ${py(VIEWER_CLIENT)},
    'api_token': ${py(SECRETS.viewer)},
    'oauth_redirect_uri': ${py(VIEWER_REDIRECT)},
    'oauth_no_confirm': True,
})`,
    }));

    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await hub?.stop();
    if (proxyPidFile && existsSync(proxyPidFile)) killPidFile(proxyPidFile);
    // the fake notebook server runs in its own session: make sure it is gone too
    if (outDir) killFakeServer(path.join(outDir, 'alice.pid'));
    await hubauth?.stop();
    await upstream?.stop();
    if (workDir && !process.env.E2E_KEEP_TMP) rmSync(workDir, { recursive: true, force: true });
  });

  // ------------------------------------------------------------------ 1

  it(`${CONCURRENCY} concurrent exchanges near expiry → exactly one upstream refresh (rotating refresh tokens); an ended upstream sign-in → login_required and revoked hubauth tokens`, async () => {
    const tokens = await rpLogin('alice');
    const loggedInAt = Date.now();
    assert.equal(tokens.claims().preferred_username, 'alice');
    assert.equal(await hubauthUserinfo(tokens.access_token), 200, 'alice\'s hubauth access token works');

    // The upstream rotates refresh tokens (server.mjs: rotateRefreshToken → true) and issued one.
    const codeGrant = (await upstream.requests()).filter((r) => r.path === '/token' && r.form?.grant_type === 'authorization_code');
    assert.equal(codeGrant.length, 1, 'hubauth redeemed one upstream code');
    assert.equal(codeGrant[0].status, 200);

    // The stored upstream token (10 s) is due for a refresh from 5 s after sign-in on (the 58 s
    // skew capped at half its lifetime).
    await waitUntilSecondAfter(loggedInAt, DUE_AFTER * 1000 + 1000);
    await upstream.clearRequests();
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: CONCURRENCY }, () => spawnerExchange(tokens.access_token)));
    const finished = Date.now();
    writeFileSync(artifactPath(`${PREFIX}-exchange-statuses.json`), JSON.stringify(answers.map((a) => a.status)));
    const bad = answers.filter((a) => a.status !== 200);
    assert.equal(bad.length, 0, `all ${CONCURRENCY} exchanges answer 200 (first failure: ${bad[0]?.status} ${bad[0]?.text})`);
    console.log(`# ${CONCURRENCY} concurrent exchanges took ${finished - started} ms`);

    const upstreamReqs = await upstream.requests();
    writeFileSync(artifactPath(`${PREFIX}-upstream-requests-exchange.json`), JSON.stringify(upstreamReqs, null, 2));
    const refreshes = refreshGrants(upstreamReqs);
    assert.equal(refreshes.length, 1, `exactly one refresh_token grant at the upstream for ${CONCURRENCY} callers (got ${refreshes.length}: ${JSON.stringify(refreshes.map((r) => r.status))}; the ${CONCURRENCY} took ${finished - started} ms; callers that waited take the refresh's result)`);
    assert.equal(refreshes[0].status, 200, 'the upstream granted the refresh');
    assert.equal(refreshes[0].rotatedRefreshToken, true, 'the upstream rotated the refresh token (the old one is now spent)');
    assert.equal(refreshes[0].authorization?.scheme, 'Basic', 'hubauth authenticated with client_secret_basic');

    const handedOut = new Set(answers.map((a) => a.json.access_token));
    assert.equal(handedOut.size, 1, `all ${CONCURRENCY} callers got the same token (got ${handedOut.size} different)`);
    const fresh = answers[0].json;
    assert.equal(fresh.issued_token_type, AT_TYPE, 'issued_token_type is an access token');
    assert.equal(fresh.token_type, 'Bearer');
    assert.ok(fresh.expires_in > DUE_AFTER - 1 && fresh.expires_in <= UPSTREAM_TTL, `a freshly refreshed token: expires_in ${fresh.expires_in}`);
    assert.equal(fresh.refresh_token, undefined, 'the upstream refresh token never leaves hubauth');
    assert.equal(fresh.id_token, undefined);
    assert.match(answers[0].headers.get('cache-control') ?? '', /no-store/, 'token responses are not cached');

    const ui = await upstreamUserinfo(fresh.access_token);
    assert.equal(ui.status, 200, `the upstream's userinfo accepts the handed-out token: ${ui.text}`);
    assert.equal(ui.json.sub, 'alice', 'the token is alice\'s at the upstream');

    // The upstream ends alice's sign-in: her grants (and so the rotated refresh token hubauth holds) are gone.
    const ended = await fetch(`${upstream.issuer}/__e2e/accounts/alice/end-session`, { method: 'POST' });
    const endedBody = await ended.json();
    assert.equal(ended.status, 200, JSON.stringify(endedBody));
    assert.ok(endedBody.grants >= 1, `the upstream destroyed alice's grant(s): ${JSON.stringify(endedBody)}`);
    assert.equal((await upstreamUserinfo(fresh.access_token)).status, 401, 'the upstream no longer accepts the handed-out token');

    // Due again, the next exchange needs a refresh, which the upstream refuses.
    await waitUntilSecondAfter(Math.max(finished, started + 1000), DUE_AFTER * 1000 + 1000);
    await upstream.clearRequests();
    const refused = await spawnerExchange(tokens.access_token);
    writeFileSync(artifactPath(`${PREFIX}-exchange-after-end-session.json`), JSON.stringify({ status: refused.status, body: refused.json ?? refused.text }, null, 2));
    assert.equal(refused.status, 400, `the exchange is refused with 400: ${refused.text}`);
    assert.equal(refused.json?.error, 'login_required', `error login_required: ${refused.text}`);
    assert.match(refused.json?.error_description ?? '', new RegExp(UPSTREAM_NAME), 'the description names the provider');
    const triedRefresh = refreshGrants(await upstream.requests());
    assert.equal(triedRefresh.length, 1, 'hubauth tried one refresh');
    assert.equal(triedRefresh[0].status, 400, 'the upstream refused it');

    // alice's hubauth tokens are revoked: the hub's next request leads to a new sign-in.
    assert.equal(await hubauthUserinfo(tokens.access_token), 401, 'hubauth userinfo refuses alice\'s access token');
    await assert.rejects(oidc.refreshTokenGrant(rp, tokens.refresh_token), (e) => {
      assert.equal(e.error, 'invalid_grant', `refresh refused with invalid_grant (got ${e.error}: ${e.message})`);
      return true;
    });
    const again = await spawnerExchange(tokens.access_token);
    assert.equal(again.json?.error, 'invalid_grant', `the revoked subject token gets nothing more: ${again.text}`);
    const audit = await eventually(async () => {
      const rows = await auditEvents('upstream_session_ended');
      return rows.length ? rows : null;
    }, { timeoutMs: 5000, what: 'audit row upstream_session_ended' });
    assert.equal(audit[0].username, 'alice');
    assert.equal(audit[0].connector_id, CONNECTOR);
  });

  // ------------------------------------------------------------------ 2

  it('a real JupyterHub\'s notebook server exchanges its JUPYTERHUB_API_TOKEN via `hubauth token`; once the hub stopped the server, the same token is refused', async () => {
    // alice signs in to the hub: hub → hubauth (connector preselected) → upstream → hub.
    const { context, page, close } = await newContext('hub-alice', { baseURL: hubUrl });
    let viewerToken;
    try {
      await page.goto('/hub/login');
      const link = page.locator('a[href*="oauth_login"]');
      await link.first().waitFor({ timeout: 30_000 }).catch(async () => assert.fail(`expected the hub's login page ${await where(page)}`));
      const callback = page.waitForResponse((r) => r.url().includes('/hub/oauth_callback'), { timeout: 60_000 });
      callback.catch(() => {});
      await link.first().click();
      await upstreamLogin(page, 'alice', 'hub-alice');
      const cb = await callback.catch(async () => assert.fail(`never reached the hub's oauth_callback ${await where(page)}`));
      assert.ok([302, 303].includes(cb.status()), `oauth_callback redirects on success (got ${cb.status()}) ${await where(page)}`);
      await page.waitForURL(/\/hub\/home/, { timeout: 30_000 }).catch(async () => assert.fail(`expected the hub home page ${await where(page)}`));
      await screenshot(page, 'hub-home-alice');
      // alice visits the hub's OAuth service e2e-viewer: it gets an identify-only token for her.
      viewerToken = await viewerOAuthToken(context);
    } finally {
      await close();
    }
    const user = await hubApi('/users/alice');
    assert.equal(user.status, 200, user.text);
    for (const k of ['access_token', 'refresh_token', 'id_token']) saw(`hubauth ${k} (hub's auth_state)`, user.json.auth_state?.[k]);

    // The hub spawns her server (SimpleLocalProcessSpawner → e2e/singleuser/fake_server.py).
    const spawned = await hubApi('/users/alice/server', { method: 'POST' });
    assert.ok([201, 202].includes(spawned.status), `the hub starts alice's server: ${spawned.status} ${spawned.text}`);
    await eventually(async () => (await hubApi('/users/alice')).json?.servers?.['']?.ready, { timeoutMs: 45_000, what: 'alice\'s server is ready' });

    // the hub refreshed alice's auth before spawning (refresh_pre_spawn): its tokens may be new
    const afterSpawn = await hubApi('/users/alice');
    for (const k of ['access_token', 'refresh_token', 'id_token']) saw(`hubauth ${k} (hub's auth_state)`, afterSpawn.json?.auth_state?.[k]);

    const outFile = path.join(outDir, 'alice-token.json');
    assert.ok(existsSync(outFile), `the server wrote ${outFile}`);
    const out = JSON.parse(readFileSync(outFile, 'utf8'));
    saw('JUPYTERHUB_API_TOKEN of alice\'s server', out.api_token);
    saw('upstream access token (notebook)', out.upstream_token);
    writeFileSync(artifactPath(`${PREFIX}-notebook-hubauth-token.json`), JSON.stringify({ exit_code: out.exit_code, got_token: Boolean(out.upstream_token), stderr: out.stderr }, null, 2));
    assert.equal(out.exit_code, 0, `\`hubauth token\` succeeded inside the notebook server: ${out.stderr}`);
    assert.ok(out.upstream_token, 'it printed a token');
    assert.ok(!out.stderr.includes(out.api_token), '`hubauth token` does not echo the hub token');

    // It really is the notebook's own hub token, and the upstream accepts what hubauth gave for it.
    const who = await hubApi('/user', { token: out.api_token });
    assert.equal(who.status, 200, `the hub accepts the server's token: ${who.text}`);
    writeFileSync(artifactPath(`${PREFIX}-hub-user-server-token.json`), JSON.stringify(who.json, null, 2));
    assert.equal(who.json.name, 'alice');
    assert.equal(who.json.kind, 'user');
    assert.equal(who.json.session_id, null, 'a server\'s token is no OAuth token');
    for (const s of [EXCHANGE_SCOPE, 'users:activity!user=alice', 'access:servers!server=alice/']) {
      assert.ok(who.json.scopes.includes(s), `the server's token has ${s} (hubauth jupyterhub-config's server_token_scopes): ${JSON.stringify(who.json.scopes)}`);
    }
    const ui = await upstreamUserinfo(out.upstream_token);
    assert.equal(ui.status, 200, `the upstream's userinfo accepts the notebook's token: ${ui.text}`);
    assert.equal(ui.json.sub, 'alice');

    // The service's identify-only OAuth token is alice's too, but not meant for exchange.
    const viewerWho = await hubApi('/user', { token: viewerToken });
    writeFileSync(artifactPath(`${PREFIX}-hub-user-service-oauth-token.json`), JSON.stringify(viewerWho.json, null, 2));
    assert.equal(viewerWho.status, 200, `the hub accepts the service's token: ${viewerWho.text}`);
    assert.equal(viewerWho.json.kind, 'user');
    assert.equal(viewerWho.json.name, 'alice');
    assert.ok(!viewerWho.json.scopes.includes(EXCHANGE_SCOPE), `an identify-only token: ${JSON.stringify(viewerWho.json.scopes)}`);
    const viewerRefused = await notebookExchange(viewerToken);
    writeFileSync(artifactPath(`${PREFIX}-exchange-service-oauth-token.json`), JSON.stringify({ status: viewerRefused.status, body: viewerRefused.json ?? viewerRefused.text }, null, 2));
    assert.equal(viewerRefused.status, 400, `the service's OAuth token is refused: ${viewerRefused.text}`);
    assert.equal(viewerRefused.json?.error, 'invalid_scope', viewerRefused.text);
    assert.match(viewerRefused.json?.error_description ?? '', /own server token/, viewerRefused.text);
    assert.match(viewerRefused.json?.error_description ?? '', new RegExp(EXCHANGE_SCOPE), viewerRefused.text);

    // Personal tokens of alice: with the exchange scope (users hold it, from the fragment) → accepted; identify only → refused.
    const personal = async (scopes) => {
      const made = await hubApi('/users/alice/tokens', { method: 'POST', body: { scopes, note: 'e2e', expires_in: 600 } });
      assert.equal(made.status, 201, `the hub makes alice a token with ${scopes}: ${made.text}`);
      saw(`personal JupyterHub token of alice (${scopes})`, made.json.token);
      return made.json.token;
    };
    const granted = await notebookExchange(await personal([EXCHANGE_SCOPE]));
    assert.equal(granted.status, 200, `a token with ${EXCHANGE_SCOPE} is exchanged: ${granted.text}`);
    assert.equal((await upstreamUserinfo(granted.json.access_token)).status, 200, 'and the upstream accepts what it got');
    const identifyOnly = await notebookExchange(await personal(['read:users:name!user=alice']));
    assert.equal(identifyOnly.json?.error, 'invalid_scope', `an identify-only personal token is refused: ${identifyOnly.text}`);

    // The hub stops the server; the server's API token goes with it.
    const stopped = await hubApi('/users/alice/server', { method: 'DELETE' });
    assert.ok([202, 204].includes(stopped.status), `the hub stops alice's server: ${stopped.status} ${stopped.text}`);
    await eventually(async () => {
      const u = (await hubApi('/users/alice')).json;
      return u && Object.keys(u.servers ?? {}).length === 0;
    }, { timeoutMs: 30_000, what: 'alice\'s server is stopped' });
    assert.equal((await hubApi('/user', { token: out.api_token })).status, 403, 'the hub no longer accepts the stopped server\'s token');

    const refused = await hubauthToken(out.api_token);
    writeFileSync(artifactPath(`${PREFIX}-hubauth-token-after-stop.txt`), `exit ${refused.code}\nstdout: ${refused.stdout}\nstderr: ${refused.stderr}`);
    assert.notEqual(refused.code, 0, `\`hubauth token\` fails with the stopped server's token (stdout: ${refused.stdout})`);
    assert.equal(refused.stdout.trim(), '', 'no token printed');
    assert.match(refused.stderr, /invalid_grant/, `hubauth refused with invalid_grant: ${refused.stderr}`);
    assert.match(refused.stderr, /hub does not accept/, `the message says the hub does not accept the token: ${refused.stderr}`);
    assert.ok(!refused.stderr.includes(out.api_token), 'the hub token is not echoed');
  });

  // ------------------------------------------------------------------ 3

  it('Authlib as a strict service-account client: client_credentials, introspection, invalid_scope, revocation', () => {
    const res = spawnSync(PYTHON, [path.join(E2E_DIR, 'authlib_service.py'), hubauth.issuer, 'jobs', SECRETS.jobs], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, PYTHONWARNINGS: 'ignore::DeprecationWarning' },
    });
    const seenLine = res.stdout.split('\n').find((l) => l.startsWith('SEEN '));
    for (const t of seenLine ? JSON.parse(seenLine.slice(5)) : []) saw('service account token (Authlib)', t);
    writeFileSync(artifactPath(`${PREFIX}-authlib-service.log`), `${res.stdout.replace(/^SEEN .*$/m, 'SEEN <tokens>')}\n${res.stderr}`);
    assert.equal(res.status, 0, `authlib_service.py failed:\n${res.stdout.replace(/^SEEN .*$/m, '')}\n${res.stderr}`);
    assert.match(res.stdout, /authlib service client: \d+ checks passed/);
  });

  // ------------------------------------------------------------------ 4

  /** Which of the values `keep(label)` selects appear in `files`: whole, or their random 16-character tail. */
  function leaksIn(files, keep) {
    const leaks = [];
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const [value, label] of seen) {
        if (!keep(label)) continue;
        if (text.includes(value)) leaks.push(`${path.basename(file)}: ${label}`);
        else if (text.includes(value.slice(-16))) leaks.push(`${path.basename(file)}: the last 16 characters of ${label}`);
      }
    }
    return leaks;
  }
  const isCode = (label) => label.startsWith('authorization code');

  it('no token or secret seen in this file appears in hubauth\'s log (debug) or the hub\'s', async () => {
    // Stop the servers first so every line is written.
    await hub.stop();
    if (existsSync(proxyPidFile)) killPidFile(proxyPidFile);
    await hubauth.stop();
    const logs = [hubauth.proc.logFile, hub.logFile];
    const labels = labelsSeen;
    for (const must of ['hubauth access token (RP)', 'hubauth refresh token (RP)', 'hubauth ID token (RP)',
      'upstream access token (exchange)', 'upstream access token (notebook)', 'JUPYTERHUB_API_TOKEN of alice\'s server',
      'service account token (Authlib)', 'secret cryptKey', 'secret spawner', 'secret jobs', 'upstream client secret']) {
      assert.ok(labels.has(must), `the test collected a ${must} to look for (earlier scenarios ran)`);
    }
    const hubauthLog = readFileSync(hubauth.proc.logFile, 'utf8');
    // The check means something only if the log is verbose: debug lines and the request traces.
    assert.match(hubauthLog, / DEBUG /, 'hubauth logged at debug level');
    assert.match(hubauthLog, /tower_http::trace/, 'tower_http request traces are in the log');
    assert.match(hubauthLog, /upstream token refreshed/, 'the custody refresh is in the log');
    assert.match(hubauthLog, /upstream token handed out by token exchange/, 'exchanges are in the log');
    assert.match(hubauthLog, /upstream session ended/, 'the ended session is in the log');
    assert.match(hubauthLog, /service account token issued/, 'service tokens are in the log');
    const checked = [...seen.values()].filter((l) => !isCode(l)).length;
    console.log(`# checked ${checked} tokens/secrets against ${logs.map((f) => `${path.basename(f)} (${readFileSync(f).length} bytes)`).join(', ')}`);
    const leaks = leaksIn(logs, (l) => !isCode(l));
    assert.deepEqual(leaks, [], `tokens or secrets in the logs:\n${leaks.join('\n')}`);
  });

  // README: "Tokens, codes, secrets and passwords are never logged." The upstream's authorization
  // codes reach hubauth in the query of GET /callback/{connector}; request traces carry paths only.
  it('no authorization code appears in hubauth\'s log (debug) or the hub\'s', () => {
    assert.ok([...seen.values()].some(isCode), 'the test saw authorization codes');
    const leaks = leaksIn([hubauth.proc.logFile, hub.logFile], isCode);
    assert.deepEqual(leaks, [], `authorization codes in the logs:\n${leaks.join('\n')}`);
  });
});
