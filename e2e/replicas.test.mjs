// Several hubauth replicas on one PostgreSQL behind a real load balancer (issue 11, end to end).
//
// Setup: a PostgreSQL server of this file's own (scripts/postgres.sh with HUBAUTH_PG_DIR=
// /tmp/hubauth-pg-e2e and a free port: this file stops it, so it must not be the shared one), one
// database per run; two `hubauth serve` replicas A and B whose configs differ only in `listen`
// (same postgres:// URL, same HUBAUTH_CRYPT_KEY), started at the same moment on the empty
// database; Debian's HAProxy in front (`balance roundrobin`, no stickiness, `option httpchk GET
// /healthz`); the issuer is the HAProxy URL and `trusted_proxies` names HAProxy's address
// (127.0.0.2, its `source`; the test connects from 127.0.0.1).
// `[tokens] refresh_token_reuse_grace = "0s"`: the strict RFC 9700 rule, so a refresh token
// presented twice is reuse, whatever the timing. (With the default 30 s grace a presentation
// that arrives after the other one committed counts as the retry of a lost answer: it gets a
// fresh pair and the first pair is withdrawn, docs/operations.md; "exactly one 200" would then
// depend on timing.)
//
//  0. X-Forwarded-For is believed from HAProxy only.
//  a. a real JupyterHub (GenericOAuthenticator, `hubauth jupyterhub-config`) logs in through
//     HAProxy (headless Chromium, dev connector) and refreshes (its access token revoked, then
//     auth_refresh_age passes); both replicas answered part of it (their request logs).
//  c. one refresh token presented to A and B at the same instant, 10 times: exactly one 200, the
//     other invalid_grant, and then the winner's new tokens are refused too (family revoked).
//  d. 100 concurrent RFC 8693 exchanges for alice, half on A and half on B, once her upstream
//     token (oidc-provider, 10 s, rotating refresh tokens) is due: exactly ONE refresh_token grant
//     at the upstream, and all 100 get the same token.
//  e. `hubauth keys rotate`: both replicas publish the new key in /jwks within the 30 s reload
//     (polled) and sign new ID tokens with it.
//  b. a login storm: 300 scripted sign-ins, each HTTP step on alternate replicas; at login 150
//     replica B is SIGKILLed and the rest go through HAProxy, which marks B DOWN: every login
//     started after the kill completes; PostgreSQL holds exactly one grant per code exchange
//     (none lost, none doubled), one session per login, one refresh token per grant; every token
//     works at the surviving replica; B restarts and rejoins.
//  f. PostgreSQL stopped under load: both /healthz answer 503 within the connect timeout, token
//     requests get 5xx with an OAuth error body, and none is half-written (every family refreshes
//     once PostgreSQL is back); /healthz recovers by itself and a login works, no restart.
//  g. `hubauth db copy` from a SQLite deployment with a live login into a fresh database: on
//     PostgreSQL the old refresh token refreshes, the old access token works at /userinfo, the
//     browser session still signs in, and the JWKS is byte-identical.
//
// If PostgreSQL cannot be started the file fails, unless HUBAUTH_E2E_ALLOW_NO_POSTGRES=1 (then
// every test is skipped with the reason printed).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, existsSync, rmSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as jose from 'jose';
import { launchChromium, screenshotter, loggedContext, jupyterhubApi, where as whereIn } from './lib/browser.mjs';
import {
  freePort, tempDir, run, artifactPath, killPidFile, HUBAUTH_BIN, CookieJar, browse,
} from './lib/harness.mjs';
import { startJupyterHub } from './lib/jupyterhub.mjs';
import {
  startUpstream, generateJwks, startHubauthServe, oidcConnectorToml, tomlStr, tomlList, upstreamDevLogin,
} from './lib/upstream-oidc.mjs';
import {
  startOwnPostgres, startHaproxy, logMark, logSince, requestsServed, total, eventually,
  passwordCodeFlow, tokenRequest, userinfo, jwtHeader, basicAuth, s256,
} from './lib/replicas.mjs';

const PREFIX = 'rep';
const PG_DIR = process.env.HUBAUTH_E2E_PG_DIR || '/tmp/hubauth-pg-e2e';
const PASSWORD = 'replica-e2e-pass';
const CONNECTOR = 'upstream';
const UPSTREAM_TTL = 10; // s: the upstream's access tokens; due for a refresh after half of it
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const AUTH_REFRESH_AGE = 3; // s: the hub's auth_refresh_age
// HAProxy reaches the replicas from this address, the only one in `trusted_proxies`; the test
// itself connects from 127.0.0.1.
const HAPROXY_SOURCE = '127.0.0.2';

const STORM = { logins: 300, concurrency: 10, killAt: 150, usersPerPhase: 15 };
const stormUser = (phase, i) => `${phase}${String(i % STORM.usersPerPhase).padStart(2, '0')}`;

const SECRETS = {
  crypt: randomBytes(32).toString('hex'),
  hub: randomBytes(24).toString('hex'),
  rp: randomBytes(24).toString('hex'),
  storm: randomBytes(24).toString('hex'),
  spawner: randomBytes(24).toString('hex'),
  hubAdmin: randomBytes(24).toString('hex'),
  hubCrypt: randomBytes(32).toString('hex'),
};
const CLIENTS = {
  rp: { id: 'rp', secret: SECRETS.rp, redirectUri: 'http://127.0.0.1:9/rp/callback' },
  storm: { id: 'storm', secret: SECRETS.storm, redirectUri: 'http://127.0.0.1:9/storm/callback' },
  spawner: { id: 'spawner', secret: SECRETS.spawner },
};

// ------------------------------------------------------------------ PostgreSQL of our own

let pg; let noPostgres = null;
try {
  pg = await startOwnPostgres({ dir: PG_DIR, port: await freePort() });
} catch (e) {
  if (process.env.HUBAUTH_E2E_ALLOW_NO_POSTGRES !== '1') {
    throw new Error(`replicas.test.mjs needs its own PostgreSQL (scripts/postgres.sh start with HUBAUTH_PG_DIR=${PG_DIR}) and it failed; set HUBAUTH_E2E_ALLOW_NO_POSTGRES=1 to skip instead:\n${e.message}`);
  }
  // the script's own error line, else the last thing it said
  const said = (e.message.split('\nstderr: ')[1] ?? e.message).trim().split('\n');
  const why = said.find((l) => l.startsWith('[postgres] error:')) ?? said.at(-1);
  noPostgres = `PostgreSQL could not be started (HUBAUTH_E2E_ALLOW_NO_POSTGRES=1): ${why}`;
  console.log(`# SKIP replicas.test.mjs: ${noPostgres}`);
}

// ------------------------------------------------------------------ state

let workDir; let db; let haproxy; let upstream; let browser; let hub; let proxyPidFile;
let hubUrl; let issuer; let devHash;
const databases = []; // created by this run, dropped in after()
const replicas = {}; // name → { name, port, origin, dir, toml, proc, stop }
const screenshot = screenshotter(PREFIX);
const where = (page) => whereIn(page, PREFIX);

function hubauthToml({ listen, storage }) {
  const devUsers = [
    { username: 'ada', groups: ['admins'] },
    { username: 'sam', groups: ['students'] },
    ...Array.from({ length: 8 }, (_, i) => ({ username: `rp${i}`, groups: ['students'] })),
    ...['pre', 'post'].flatMap((p) => Array.from({ length: STORM.usersPerPhase }, (_, i) => ({ username: stormUser(p, i), groups: ['students'] }))),
  ];
  return `# written by e2e/replicas.test.mjs
issuer = ${tomlStr(issuer)}
listen = ${tomlStr(listen)}
trusted_proxies = ["127.0.0.2/32"]

${storage}

[tokens]
upstream_refresh_skew = "58s"
refresh_token_reuse_grace = "0s"

[[clients]]
id = "jupyterhub"
name = "Replica Hub"
secret = { env = "HUBAUTH_CLIENT_SECRET" }
redirect_uris = [${tomlStr(`${hubUrl}/hub/oauth_callback`)}]
post_logout_redirect_uris = [${tomlStr(`${hubUrl}/hub/`)}]
[clients.hub]
allowed_groups = ["students", "admins"]
admin_groups = ["admins"]
secret_env = "HUBAUTH_CLIENT_SECRET"
connector = "dev"

[[clients]]
id = "rp"
secret = { env = "E2E_RP_SECRET" }
redirect_uris = [${tomlStr(CLIENTS.rp.redirectUri)}]

[[clients]]
id = "storm"
secret = { env = "E2E_STORM_SECRET" }
redirect_uris = [${tomlStr(CLIENTS.storm.redirectUri)}]

[[clients]]
id = "spawner"
secret = { env = "E2E_SPAWNER_SECRET" }
grant_types = ["token_exchange"]
redirect_uris = []
[clients.token_exchange]
audiences = [${tomlStr(CONNECTOR)}]
subject_token_types = ["access_token"]
subject_clients = ["rp"]

${oidcConnectorToml(upstream, { id: CONNECTOR })}
[[connectors]]
type = "dev"
id = "dev"
name = "Demo accounts"
${devUsers.map((u) => `
[[connectors.users]]
username = ${tomlStr(u.username)}
password_hash = ${tomlStr(devHash)}
groups = ${tomlList(u.groups)}`).join('\n')}
`;
}

const ENV = () => ({
  HUBAUTH_LOG: 'hubauth=debug,tower_http=debug',
  HUBAUTH_CRYPT_KEY: SECRETS.crypt,
  HUBAUTH_E2E_DB_PASSWORD: pg.password,
  HUBAUTH_UPSTREAM_SECRET: upstream.clientSecret,
  HUBAUTH_CLIENT_SECRET: SECRETS.hub,
  E2E_RP_SECRET: SECRETS.rp,
  E2E_STORM_SECRET: SECRETS.storm,
  E2E_SPAWNER_SECRET: SECRETS.spawner,
});

const pgStorage = (database) => `[storage]
url = ${tomlStr(pg.url(database))}
password = { env = "HUBAUTH_E2E_DB_PASSWORD" }
ssl_mode = "verify-full"
ssl_root_cert = ${tomlStr(pg.ca)}
connect_timeout = "2s"
statement_timeout = "5s"`;

async function startReplica(name, { logName = `${PREFIX}-hubauth-${name}` } = {}) {
  const r = replicas[name];
  const started = await startHubauthServe({ name: logName, dir: r.dir, port: r.port, toml: r.toml, env: ENV() });
  Object.assign(r, { proc: started.proc, stop: started.stop, configPath: started.configPath });
  return r;
}

async function health(origin) {
  const t0 = Date.now();
  try {
    const res = await fetch(`${origin}/healthz`, { signal: AbortSignal.timeout(15_000) });
    return { status: res.status, body: await res.text(), ms: Date.now() - t0 };
  } catch (e) {
    return { status: 0, body: e.cause?.code || e.name, ms: Date.now() - t0 };
  }
}

/** A login of dev user `user` at the rp client through HAProxy: { tokens }. */
async function rpLogin(user, route = () => haproxy.url) {
  const r = await passwordCodeFlow({ jar: new CookieJar(), route, issuer, client: CLIENTS.rp, user, password: PASSWORD });
  if (r.error) assert.fail(`${user} could not sign in (stage ${r.stage}): ${r.error.message}`);
  return r.tokens;
}

const refresh = (origin, client, refreshToken) => tokenRequest(origin, client, { grant_type: 'refresh_token', refresh_token: refreshToken });

async function jwks(origin) {
  const res = await fetch(`${origin}/jwks`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) };
}

// ------------------------------------------------------------------ the tests

describe('two hubauth replicas on one PostgreSQL behind HAProxy', { timeout: 420_000, skip: noPostgres ?? false }, () => {
  before(async () => {
    workDir = tempDir('replicas');
    db = await pg.createDatabase(`hubauth_e2e_${Date.now()}_${randomBytes(3).toString('hex')}`);
    databases.push(db);
    const lbPort = await freePort();
    const statsPort = await freePort();
    const hubPort = await freePort();
    const hubApiPort = await freePort();
    const proxyApiPort = await freePort();
    issuer = `http://127.0.0.1:${lbPort}`;
    hubUrl = `http://127.0.0.1:${hubPort}`;
    devHash = (await run(HUBAUTH_BIN, ['hash-password', '--password', PASSWORD])).stdout.trim();

    upstream = await startUpstream({
      name: `${PREFIX}-upstream`,
      redirectUris: [`${issuer}/callback/${CONNECTOR}`],
      jwks: generateJwks({ kid: 'replicas-upstream-1' }),
      accessTokenTTL: UPSTREAM_TTL,
    });

    for (const name of ['a', 'b']) {
      const port = await freePort();
      const dir = path.join(workDir, `replica-${name}`);
      mkdirSync(dir, { recursive: true });
      replicas[name] = { name, port, origin: `http://127.0.0.1:${port}`, dir };
    }
    for (const r of Object.values(replicas)) r.toml = hubauthToml({ listen: `127.0.0.1:${r.port}`, storage: pgStorage(db) });
    // The same configuration but for the address each listens on.
    const strip = (t) => t.replace(/^listen = .*$/m, '');
    assert.equal(strip(replicas.a.toml), strip(replicas.b.toml), 'the replicas\' configs differ only in `listen`');

    // HAProxy first (the replicas' outgoing connections could take its ports otherwise).
    haproxy = await startHaproxy({
      name: `${PREFIX}-haproxy`, dir: workDir, port: lbPort, statsPort,
      servers: [{ name: 'a', port: replicas.a.port }, { name: 'b', port: replicas.b.port }],
      source: HAPROXY_SOURCE,
    });
    // Both start at once on the empty database: migrations and the first signing key race.
    await Promise.all([startReplica('a'), startReplica('b')]);
    await eventually(async () => {
      const s = await haproxy.serverStatus();
      return s.a === 'UP' && s.b === 'UP' ? s : null;
    }, { timeoutMs: 15_000, what: 'HAProxy sees both replicas UP' });

    const { stdout: fragment } = await run(HUBAUTH_BIN, ['jupyterhub-config', '--config', replicas.a.configPath, '--client', 'jupyterhub'], {
      env: { ...process.env, ...ENV() },
    });
    assert.match(fragment, new RegExp(`authorize_url = "${issuer}/authorize"`), 'the hub talks to the load balancer');
    ({ proc: hub, proxyPidFile } = await startJupyterHub({
      name: PREFIX, workDir, fragment, hubUrl, hubApiPort, proxyApiPort,
      adminToken: SECRETS.hubAdmin, authRefreshAge: AUTH_REFRESH_AGE, cryptKey: SECRETS.hubCrypt,
      env: { HUBAUTH_CLIENT_SECRET: SECRETS.hub },
    }));
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await hub?.stop();
    if (proxyPidFile && existsSync(proxyPidFile)) killPidFile(proxyPidFile);
    await haproxy?.stop();
    for (const r of Object.values(replicas)) await r.stop?.();
    await upstream?.stop();
    // The server is this file's own; its data dir stays for the next run, the databases do not.
    if (!process.env.E2E_KEEP_TMP) {
      for (const name of databases) {
        await pg.psql('postgres', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch((e) => console.log(`# dropping ${name}: ${e.message}`));
      }
    }
    await pg?.stop().catch((e) => console.log(`# stopping PostgreSQL: ${e.message}`));
    if (workDir && !process.env.E2E_KEEP_TMP) rmSync(workDir, { recursive: true, force: true });
  });

  // ------------------------------------------------------------------ 0

  it('0: the client address is X-Forwarded-For\'s from HAProxy (trusted_proxies), and the peer\'s from anyone else', async () => {
    // A pending sign-in records the address its per-address cap counts it under.
    const recorded = async (origin, headers = {}) => {
      const state = randomBytes(12).toString('hex');
      const authorize = new URL('/authorize', issuer);
      authorize.search = new URLSearchParams({
        response_type: 'code', client_id: 'rp', redirect_uri: CLIENTS.rp.redirectUri, scope: 'openid', state,
        code_challenge: s256(randomBytes(32).toString('base64url')), code_challenge_method: 'S256', connector: 'dev',
      });
      const res = await browse(new CookieJar(), new URL(`${authorize.pathname}${authorize.search}`, origin), { headers });
      assert.equal(res.status, 303, `/authorize sends the browser to the login page: ${res.status} ${res.text.slice(0, 200)}`);
      const rows = await pg.psql(db, `SELECT client_address FROM pending_authorizations WHERE request_json LIKE '%${state}%'`);
      assert.equal(rows.length, 1, `one pending sign-in for state ${state}`);
      return rows[0][0];
    };
    assert.equal(await recorded(haproxy.url), '127.0.0.1', 'through HAProxy (peer 127.0.0.2): the address HAProxy names');
    assert.equal(await recorded(haproxy.url, { 'x-forwarded-for': '203.0.113.7' }), '127.0.0.1', 'a header the client forged before HAProxy is not believed');
    assert.equal(await recorded(replicas.a.origin, { 'x-forwarded-for': '203.0.113.7' }), '127.0.0.1', 'nor one sent straight to a replica');
  });

  // ------------------------------------------------------------------ a

  it('a: a real JupyterHub logs in and refreshes through HAProxy; both replicas answered part of it', async () => {
    const marks = Object.fromEntries(Object.values(replicas).map((r) => [r.name, logMark(r.proc.logFile)]));
    const api = (p, o) => jupyterhubApi(hubUrl, SECRETS.hubAdmin, p, o);
    const { page, context, close } = await loggedContext(browser, { prefix: PREFIX, label: 'hub-sam', baseURL: hubUrl });
    let served; // requests per replica during the hub's login and refresh
    try {
      await page.goto('/hub/login');
      const link = page.locator('a[href*="oauth_login"]');
      await link.first().waitFor({ timeout: 15_000 });
      const callback = page.waitForResponse((r) => r.url().includes('/hub/oauth_callback'), { timeout: 30_000 });
      callback.catch(() => {});
      await link.first().click();
      await page.waitForSelector('#username', { timeout: 15_000 }).catch(async () => assert.fail(`expected hubauth's form ${await where(page)}`));
      assert.equal(new URL(page.url()).origin, issuer, 'the login form comes through the load balancer');
      await page.fill('#username', 'sam');
      await page.fill('#password', PASSWORD);
      await screenshot(page, 'hub-form-sam');
      await page.locator('form[method="post" i] [type="submit"], form[method="post" i] button').first().click();
      const cb = await callback;
      assert.ok([302, 303].includes(cb.status()), `the hub's oauth_callback succeeds (got ${cb.status()}) ${await where(page)}`);
      await page.waitForURL(/\/hub\/home/, { timeout: 15_000 }).catch(async () => assert.fail(`expected the hub home ${await where(page)}`));
      await screenshot(page, 'hub-home-sam');
      const before = (await api('/users/sam')).json?.auth_state;
      assert.ok(before?.access_token && before?.refresh_token, 'the hub holds hubauth tokens for sam');

      // Force the hub's refresh: revoke its access token (RFC 7009), let auth_refresh_age pass;
      // its next cookie request calls refresh_user: userinfo 401 → refresh_token grant.
      const rev = await fetch(`${issuer}/revoke`, {
        method: 'POST',
        headers: { authorization: basicAuth('jupyterhub', SECRETS.hub), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: before.access_token, token_type_hint: 'access_token' }),
      });
      assert.equal(rev.status, 200, 'revocation accepted');
      await sleep((AUTH_REFRESH_AGE + 1) * 1000);
      const res = await context.request.get('/hub/home', { maxRedirects: 0 });
      assert.equal(res.status(), 200, `still signed in at the hub after its refresh (got ${res.status()} ${res.headers().location ?? ''})`);
      const afterState = (await api('/users/sam')).json?.auth_state;
      assert.notEqual(afterState.access_token, before.access_token, 'the hub got a new access token');
      assert.notEqual(afterState.refresh_token, before.refresh_token, 'and the rotated refresh token');
      // (the request lines reach the log files through pipes: give them a moment)
      const perReplica = () => Object.fromEntries(Object.values(replicas).map((r) => [r.name, requestsServed(logSince(r.proc.logFile, marks[r.name]))]));
      served = await eventually(() => {
        const now = perReplica();
        return (now.a['POST /token'] ?? 0) + (now.b['POST /token'] ?? 0) >= 2 ? now : null;
      }, { timeoutMs: 5000, what: 'the hub\'s code exchange and refresh are in the replicas\' logs' }).catch(() => perReplica());
      for (const r of Object.values(replicas)) {
        assert.equal((await userinfo(r.origin, afterState.access_token)).status, 200, `the new access token works at replica ${r.name}`);
      }
    } finally {
      await close();
    }
    writeFileSync(artifactPath(`${PREFIX}-hub-requests-per-replica.json`), JSON.stringify(served, null, 2));
    console.log(`# hub login + refresh, requests per replica: ${JSON.stringify(served)}`);
    for (const r of Object.values(replicas)) {
      // The test's own revocation is not the hub's.
      const hubs = total(served[r.name]) - (served[r.name]['POST /revoke'] ?? 0);
      assert.ok(hubs > 0, `replica ${r.name} answered part of the hub's login and refresh: ${JSON.stringify(served)}`);
    }
    const tokenCalls = served.a['POST /token'] ?? 0;
    assert.equal(tokenCalls + (served.b['POST /token'] ?? 0), 2, `one code exchange and one refresh: ${JSON.stringify(served)}`);
  });

  // ------------------------------------------------------------------ c

  it('c: one refresh token at both replicas at the same instant: exactly one 200, the other invalid_grant; the family is then revoked', async () => {
    const rounds = 10;
    const outcomes = [];
    for (let i = 0; i < rounds; i += 1) {
      const tokens = await rpLogin(`rp${i % 8}`);
      const answers = await Promise.all([replicas.a, replicas.b].map((r) => refresh(r.origin, CLIENTS.rp, tokens.refresh_token)));
      outcomes.push(answers.map((x) => `${x.status} ${x.json?.error ?? ''}`.trim()));
      const won = answers.filter((x) => x.status === 200);
      const lost = answers.filter((x) => x.status !== 200);
      assert.equal(won.length, 1, `round ${i}: exactly one replica rotates the token (got ${JSON.stringify(outcomes.at(-1))})`);
      assert.equal(lost[0].status, 400, `round ${i}: the other answers 400: ${lost[0].text}`);
      assert.equal(lost[0].json?.error, 'invalid_grant', `round ${i}: invalid_grant: ${lost[0].text}`);
      // The loser presented a spent token: with no grace that is reuse, and the whole family goes.
      const winner = won[0].json;
      const again = await refresh(haproxy.url, CLIENTS.rp, winner.refresh_token);
      assert.equal(again.json?.error, 'invalid_grant', `round ${i}: the winner's new refresh token is revoked too: ${again.text}`);
      assert.equal((await userinfo(haproxy.url, winner.access_token)).status, 401, `round ${i}: and its new access token`);
    }
    writeFileSync(artifactPath(`${PREFIX}-refresh-race.json`), JSON.stringify(outcomes));
    console.log(`# simultaneous refreshes (A, B): ${JSON.stringify(outcomes)}`);
  });

  // ------------------------------------------------------------------ d

  it('d: 100 concurrent token exchanges for one user over both replicas cause exactly one upstream refresh', async () => {
    const { context, page, close } = await loggedContext(browser, { prefix: PREFIX, label: 'alice-upstream' });
    const hits = [];
    await context.route((u) => u.href.startsWith(CLIENTS.rp.redirectUri), (route) => {
      hits.push(route.request().url());
      route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>RP</title>' });
    });
    const verifier = randomBytes(32).toString('base64url');
    const state = randomBytes(8).toString('hex');
    let tokens;
    let loggedInAt;
    try {
      const authorize = new URL('/authorize', issuer);
      authorize.search = new URLSearchParams({
        response_type: 'code', client_id: 'rp', redirect_uri: CLIENTS.rp.redirectUri, scope: 'openid profile offline_access',
        state, nonce: 'n-alice', code_challenge: s256(verifier), code_challenge_method: 'S256', connector: CONNECTOR,
      });
      await page.goto(authorize.href);
      await upstreamDevLogin(page, { user: 'alice', issuer: upstream.issuer, describe: () => where(page) });
      await eventually(() => hits.length > 0, { timeoutMs: 20_000, what: 'the browser reaches the RP' });
      loggedInAt = Date.now();
      const code = new URL(hits[0]).searchParams.get('code');
      const tok = await tokenRequest(haproxy.url, CLIENTS.rp, { grant_type: 'authorization_code', code, redirect_uri: CLIENTS.rp.redirectUri, code_verifier: verifier });
      assert.equal(tok.status, 200, tok.text);
      tokens = tok.json;
    } finally {
      await close();
    }

    // The stored upstream token is due from half its lifetime on (the 58 s skew is capped there).
    const dueAt = Math.ceil((loggedInAt + (UPSTREAM_TTL / 2) * 1000 + 1000) / 1000) * 1000 + 50;
    await sleep(Math.max(0, dueAt - Date.now()));
    await upstream.clearRequests();
    const exchange = (origin) => fetch(new URL('/token', origin), {
      method: 'POST',
      headers: { authorization: basicAuth('spawner', SECRETS.spawner), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: EXCHANGE, subject_token: tokens.access_token, subject_token_type: AT_TYPE, audience: CONNECTOR }),
      signal: AbortSignal.timeout(60_000),
    }).then(async (r) => ({ status: r.status, text: await r.text() }));
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => exchange(i % 2 ? replicas.b.origin : replicas.a.origin)));
    console.log(`# 100 exchanges over both replicas took ${Date.now() - started} ms`);
    const bad = answers.filter((x) => x.status !== 200);
    assert.equal(bad.length, 0, `all 100 exchanges answer 200 (first failure: ${bad[0]?.status} ${bad[0]?.text})`);
    const reqs = await upstream.requests();
    writeFileSync(artifactPath(`${PREFIX}-upstream-requests-exchange.json`), JSON.stringify(reqs, null, 2));
    const refreshes = reqs.filter((r) => r.path === '/token' && r.form?.grant_type === 'refresh_token');
    assert.equal(refreshes.length, 1, `exactly one refresh_token grant at the upstream for 100 exchanges on two replicas (got ${refreshes.length}: ${JSON.stringify(refreshes.map((r) => r.status))})`);
    assert.equal(refreshes[0].status, 200);
    const handedOut = new Set(answers.map((x) => JSON.parse(x.text).access_token));
    assert.equal(handedOut.size, 1, `all 100 got the same upstream token (got ${handedOut.size})`);
    const [fresh] = handedOut;
    const meta = await (await fetch(`${upstream.issuer}/.well-known/openid-configuration`)).json();
    const ui = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${fresh}` } });
    assert.equal(ui.status, 200, 'the upstream accepts the handed-out token');
    assert.equal((await ui.json()).sub, 'alice');
  });

  // ------------------------------------------------------------------ e

  it('e: `hubauth keys rotate` once: both replicas publish the new key within the reload interval and sign with it', async () => {
    let tokens = await rpLogin('rp0');
    const before = new Set((await jwks(replicas.a.origin)).json.keys.map((k) => k.kid));
    const oldKid = jwtHeader(tokens.id_token).kid;
    assert.ok(before.has(oldKid));
    const rotated = await run(HUBAUTH_BIN, ['keys', 'rotate', '--config', replicas.a.configPath], { env: { ...process.env, ...ENV() } });
    writeFileSync(artifactPath(`${PREFIX}-keys-rotate.txt`), rotated.stdout + rotated.stderr);
    // One new active key per algorithm in use (RS256, ES256); the ID tokens here are RS256.
    const announced = Object.fromEntries([...rotated.stdout.matchAll(/^(\w+): new active key ([A-Za-z0-9_-]+)/gm)].map((m) => [m[1], m[2]]));
    const newKid = announced.RS256;
    assert.ok(newKid, `keys rotate names the new RS256 key: ${rotated.stdout}`);
    const t0 = Date.now();
    // Both polled at once, from the rotation on: the documented 30 s reload, plus room for the
    // poll and a slow debug build.
    await Promise.all(Object.values(replicas).map(async (r) => {
      const published = await eventually(async () => {
        const kids = (await jwks(r.origin)).json.keys.map((k) => k.kid).filter((k) => !before.has(k));
        return kids.length === Object.keys(announced).length ? kids : null;
      }, { timeoutMs: 35_000, intervalMs: 500, what: `replica ${r.name} publishes the new keys ${JSON.stringify(announced)} within the 30 s reload` });
      assert.deepEqual(published.sort(), Object.values(announced).sort(), `replica ${r.name} publishes exactly the new keys`);
    }));
    console.log(`# both replicas published the new keys ${Date.now() - t0} ms after the rotation`);
    assert.ok((await jwks(replicas.a.origin)).json.keys.some((k) => k.kid === oldKid), 'the old key stays published');
    for (const r of Object.values(replicas)) {
      const res = await refresh(r.origin, CLIENTS.rp, tokens.refresh_token);
      assert.equal(res.status, 200, res.text);
      tokens = res.json;
      assert.equal(jwtHeader(tokens.id_token).kid, newKid, `replica ${r.name} signs new ID tokens with the new key`);
      const set = jose.createLocalJWKSet((await jwks(r === replicas.a ? replicas.b.origin : replicas.a.origin)).json);
      await jose.jwtVerify(tokens.id_token, set, { issuer, audience: 'rp' });
    }
  });

  // ------------------------------------------------------------------ b

  it(`b: login storm (${STORM.logins} sign-ins, steps on alternate replicas, B SIGKILLed at ${STORM.killAt}): every login after the kill completes, none lost or doubled`, async () => {
    const A = replicas.a.origin; const B = replicas.b.origin;
    const results = new Array(STORM.logins);
    let next = 0;
    let killed = null; // promise, set by the login that reaches killAt
    let statusAfterKill;
    const kill = async () => {
      const child = replicas.b.proc.child;
      process.kill(-child.pid, 'SIGKILL');
      await replicas.b.proc.exited;
      statusAfterKill = await eventually(async () => {
        const s = await haproxy.serverStatus();
        return s.b?.startsWith('DOWN') ? s : null;
      }, { timeoutMs: 15_000, intervalMs: 100, what: 'HAProxy marks the killed replica DOWN' });
    };
    const marks = { a: logMark(replicas.a.proc.logFile), b: logMark(replicas.b.proc.logFile) };
    const t0 = Date.now();
    const worker = async () => {
      for (;;) {
        const i = next; next += 1;
        if (i >= STORM.logins) return;
        if (i >= STORM.killAt) {
          killed ??= kill();
          await killed;
        }
        const afterKill = i >= STORM.killAt;
        const user = stormUser(afterKill ? 'post' : 'pre', i);
        const route = afterKill ? () => haproxy.url : (step) => ((i + step) % 2 ? B : A);
        const r = await passwordCodeFlow({ jar: new CookieJar(), route, issuer, client: CLIENTS.storm, user, password: PASSWORD });
        results[i] = { i, user, afterKill, stage: r.stage, tokens: r.tokens, error: r.error?.message };
      }
    };
    await Promise.all(Array.from({ length: STORM.concurrency }, worker));
    const took = Date.now() - t0;
    const done = results.filter((r) => r.stage === 4);
    const failed = results.filter((r) => r.stage !== 4);
    writeFileSync(artifactPath(`${PREFIX}-storm.json`), JSON.stringify(results.map(({ tokens, ...r }) => r), null, 2));
    console.log(`# storm: ${done.length}/${STORM.logins} completed in ${took} ms; ${failed.length} failed (all before the kill: ${failed.every((r) => !r.afterKill)}); HAProxy after the kill: ${JSON.stringify(statusAfterKill)}`);
    // Before the kill every step ran on both replicas (a login's steps alternate between them).
    const served = { a: requestsServed(logSince(replicas.a.proc.logFile, marks.a)), b: requestsServed(logSince(replicas.b.proc.logFile, marks.b)) };
    writeFileSync(artifactPath(`${PREFIX}-storm-requests-per-replica.json`), JSON.stringify(served, null, 2));
    for (const step of ['GET /authorize', 'GET /login', 'POST /login/dev', 'POST /token']) {
      for (const name of ['a', 'b']) assert.ok(served[name][step] >= STORM.killAt / 2 - STORM.concurrency, `replica ${name} answered ${step} for about half the pre-kill logins: ${JSON.stringify(served)}`);
    }
    const lateFailures = failed.filter((r) => r.afterKill);
    assert.deepEqual(lateFailures, [], 'every login that started after the kill completed');
    assert.equal(done.filter((r) => r.afterKill).length, STORM.logins - STORM.killAt);
    // Before the kill only the logins in flight at that moment may have failed.
    assert.ok(failed.length <= STORM.concurrency, `at most the ${STORM.concurrency} logins in flight at the kill failed (got ${failed.length})`);

    // PostgreSQL: one grant per code exchange, one session per login, one refresh token per grant.
    const rows = await pg.psql(db, `
      SELECT u.username,
        (SELECT count(*) FROM grants g WHERE g.user_id = u.id AND g.client_id = 'storm'),
        (SELECT count(*) FROM authorization_codes c WHERE c.user_id = u.id AND c.client_id = 'storm' AND c.used_at IS NOT NULL),
        (SELECT count(DISTINCT c.grant_id) FROM authorization_codes c WHERE c.user_id = u.id AND c.client_id = 'storm' AND c.grant_id IS NOT NULL),
        (SELECT count(*) FROM browser_sessions s WHERE s.user_id = u.id),
        (SELECT count(*) FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id WHERE g.user_id = u.id AND g.client_id = 'storm'),
        (SELECT count(*) FROM user_identities i WHERE i.user_id = u.id)
      FROM users u WHERE u.username LIKE 'pre%' OR u.username LIKE 'post%' ORDER BY u.username`);
    const inDb = Object.fromEntries(rows.map(([u, ...n]) => [u, n.map(Number)]));
    writeFileSync(artifactPath(`${PREFIX}-storm-db.json`), JSON.stringify(inDb, null, 2));
    const sum = (phase, col) => Object.entries(inDb).filter(([u]) => u.startsWith(phase)).reduce((a, [, n]) => a + n[col], 0);
    const count = (phase, pred) => results.filter((r) => r.user.startsWith(phase) && pred(r)).length;
    for (const [u, n] of Object.entries(inDb)) {
      assert.equal(n[5], 1, `${u}: one identity (no duplicate account from racing first logins)`);
      assert.equal(n[1], n[0], `${u}: every grant came from one spent code`);
      assert.equal(n[2], n[0], `${u}: and no two codes share a grant`);
      assert.equal(n[4], n[0], `${u}: one refresh token per grant`);
    }
    // After the kill everything is exact.
    assert.equal(sum('post', 0), count('post', (r) => r.stage === 4), 'post-kill logins: grants = completed code exchanges');
    assert.equal(sum('post', 3), count('post', (r) => r.stage >= 3), 'post-kill logins: sessions = submitted logins');
    // Before: a request cut off by the kill may have committed without its answer reaching us.
    const preDone = count('pre', (r) => r.stage === 4);
    const preCut = count('pre', (r) => r.stage === 3);
    assert.ok(sum('pre', 0) >= preDone && sum('pre', 0) <= preDone + preCut,
      `pre-kill grants ${sum('pre', 0)} between the ${preDone} completed and ${preDone + preCut} (+ exchanges cut off)`);
    const preSessions = count('pre', (r) => r.stage >= 3);
    const prePosted = count('pre', (r) => r.stage === 2);
    assert.ok(sum('pre', 3) >= preSessions && sum('pre', 3) <= preSessions + prePosted,
      `pre-kill sessions ${sum('pre', 3)} between ${preSessions} and ${preSessions + prePosted}`);

    // Every finished login works at the surviving replica: userinfo, then its refresh token.
    const subs = new Map();
    for (const r of done) {
      const ui = await userinfo(A, r.tokens.access_token);
      assert.equal(ui.status, 200, `login ${r.i} (${r.user}): access token at replica A: ${ui.text}`);
      assert.equal(ui.json.preferred_username, r.user);
      if (subs.has(r.user)) assert.equal(ui.json.sub, subs.get(r.user), `${r.user} has one sub`);
      subs.set(r.user, ui.json.sub);
    }
    const refreshed = await Promise.all(done.map((r) => refresh(A, CLIENTS.storm, r.tokens.refresh_token)));
    const notRefreshed = refreshed.filter((x) => x.status !== 200);
    assert.equal(notRefreshed.length, 0, `every finished login's refresh token works at A (first failure: ${notRefreshed[0]?.text})`);
    assert.equal(new Set(done.map((r) => r.tokens.access_token)).size, done.length, 'no two logins got the same token');

    // B comes back and HAProxy sends it traffic again.
    await startReplica('b', { logName: `${PREFIX}-hubauth-b-restarted` });
    await eventually(async () => ((await haproxy.serverStatus()).b === 'UP' ? true : null), { timeoutMs: 15_000, what: 'HAProxy marks the restarted replica UP' });
    const mark = logMark(replicas.b.proc.logFile);
    for (let k = 0; k < 4; k += 1) await fetch(`${haproxy.url}/jwks`).then((r) => r.arrayBuffer());
    assert.ok(total(requestsServed(logSince(replicas.b.proc.logFile, mark))) > 0, 'the restarted replica answers requests through HAProxy');
  });

  // ------------------------------------------------------------------ f

  it('f: PostgreSQL stops: /healthz 503 (bounded), token requests 5xx with an OAuth error, no half-written grant; it comes back by itself', async () => {
    const families = [];
    for (let i = 0; i < 6; i += 1) families.push({ rt: (await rpLogin(`rp${i}`)).refresh_token, log: [] });
    const origins = [replicas.a.origin, replicas.b.origin];

    // Each family keeps refreshing on alternate replicas: before the stop (all must succeed),
    // while PostgreSQL shuts down (requests in flight), and until two attempts after it is down.
    let phase = 'before';
    const deadline = Date.now() + 30_000;
    const loops = families.map(async (f, fi) => {
      let afterStop = 0;
      for (let n = 0; afterStop < 2 && Date.now() < deadline; n += 1) {
        const during = phase;
        let res;
        try {
          res = await refresh(origins[(fi + n) % 2], CLIENTS.rp, f.rt);
        } catch (e) {
          res = { status: 0, text: `no answer: ${e.cause?.code || e.name}`, headers: new Headers() };
        }
        // Only an answer that also came back before the stop began counts as "before": one
        // still in flight when PostgreSQL starts shutting down may meet the shutdown.
        const phaseOf = during === 'before' && phase !== 'before' ? 'stopping' : during;
        f.log.push({ status: res.status, error: res.json?.error, phase: phaseOf });
        if (res.status === 200) {
          assert.ok(res.json.access_token && res.json.refresh_token && res.json.id_token, `a 200 is a whole answer: ${res.text}`);
          f.rt = res.json.refresh_token;
        } else {
          assert.ok(res.status >= 500 && res.status < 600, `a refused refresh (${during}) is a 5xx (got ${res.status}: ${res.text})`);
          assert.ok(['server_error', 'temporarily_unavailable'].includes(res.json?.error), `with an OAuth error body: ${res.text}`);
          assert.match(res.headers.get('content-type') ?? '', /application\/json/);
        }
        if (during === 'stopped') afterStop += 1;
      }
    });
    await eventually(() => families.every((f) => f.log.filter((l) => l.status === 200).length >= 3), { timeoutMs: 15_000, intervalMs: 20, what: 'refreshes succeed before the stop' });
    phase = 'stopping';
    await pg.stop();
    phase = 'stopped';
    await Promise.all(loops);
    writeFileSync(artifactPath(`${PREFIX}-db-loss-refreshes.json`), JSON.stringify(families.map((f) => f.log), null, 2));
    const byPhase = (p) => families.flatMap((f) => f.log.filter((l) => l.phase === p));
    console.log(`# refreshes around the stop: ${JSON.stringify(Object.fromEntries(['before', 'stopping', 'stopped'].map((p) => [p, byPhase(p).map((l) => l.status).join(' ')])))}`);
    assert.ok(byPhase('before').every((l) => l.status === 200), 'with PostgreSQL up every refresh succeeds');
    assert.ok(byPhase('stopped').length >= 12 && byPhase('stopped').every((l) => l.status >= 500), 'with PostgreSQL down every refresh fails with a 5xx');

    for (const r of Object.values(replicas)) {
      const h = await health(r.origin);
      assert.equal(h.status, 503, `replica ${r.name} /healthz answers 503 without PostgreSQL (got ${h.status} ${h.body} after ${h.ms} ms)`);
      console.log(`# replica ${r.name} /healthz without PostgreSQL: ${h.status} in ${h.ms} ms`);
    }
    await eventually(async () => {
      const s = await haproxy.serverStatus();
      return s.a?.startsWith('DOWN') && s.b?.startsWith('DOWN') ? s : null;
    }, { timeoutMs: 15_000, what: 'HAProxy takes both replicas out' });

    await pg.start();
    for (const r of Object.values(replicas)) {
      await eventually(async () => ((await health(r.origin)).status === 200 ? true : null), { timeoutMs: 30_000, intervalMs: 500, what: `replica ${r.name} /healthz back to 200 without a restart` });
    }
    await eventually(async () => {
      const s = await haproxy.serverStatus();
      return s.a === 'UP' && s.b === 'UP' ? s : null;
    }, { timeoutMs: 15_000, what: 'HAProxy has both replicas back' });
    // No half-written grant: each family's last refresh token is still the live one.
    for (const [fi, f] of families.entries()) {
      const res = await refresh(origins[fi % 2], CLIENTS.rp, f.rt);
      assert.equal(res.status, 200, `family ${fi}: its last refresh token still refreshes (${JSON.stringify(f.log)}): ${res.text}`);
    }
    const tokens = await rpLogin('rp7');
    assert.equal((await userinfo(haproxy.url, tokens.access_token)).status, 200, 'a new login works');
  });

  // ------------------------------------------------------------------ g

  it('g: `hubauth db copy` SQLite → PostgreSQL: the old refresh and access tokens and the session keep working, the JWKS is byte-identical', async () => {
    const dir = path.join(workDir, 'copy');
    mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    const sqliteToml = (storage) => `# written by e2e/replicas.test.mjs (db copy)
issuer = ${tomlStr(origin)}
listen = ${tomlStr(`127.0.0.1:${port}`)}

${storage}

[[clients]]
id = "jupyterhub"
secret = { env = "HUBAUTH_CLIENT_SECRET" }
redirect_uris = ["http://127.0.0.1:9/hub/oauth_callback"]

[[connectors]]
type = "dev"
id = "dev"
name = "Demo accounts"
[[connectors.users]]
username = "ada"
password_hash = ${tomlStr(devHash)}
groups = ["admins"]
`;
    const hubClient = { id: 'jupyterhub', secret: SECRETS.hub, redirectUri: 'http://127.0.0.1:9/hub/oauth_callback' };
    const env = { HUBAUTH_CRYPT_KEY: SECRETS.crypt, HUBAUTH_CLIENT_SECRET: SECRETS.hub, HUBAUTH_E2E_DB_PASSWORD: pg.password };
    let server = await startHubauthServe({ name: `${PREFIX}-copy-sqlite`, dir, port, toml: sqliteToml('[storage]\nurl = "sqlite://hubauth.db"'), env });
    const jar = new CookieJar();
    const login = await passwordCodeFlow({ jar, route: () => origin, issuer: origin, client: hubClient, user: 'ada', password: PASSWORD });
    assert.ok(!login.error, `ada signs in on SQLite: ${login.error?.message}`);
    const jwksBefore = (await jwks(origin)).text;
    assert.equal((await userinfo(origin, login.tokens.access_token)).status, 200);
    await server.stop();

    const target = await pg.createDatabase(`hubauth_copy_${Date.now()}`);
    databases.push(target);
    const copied = await run(HUBAUTH_BIN, ['db', 'copy', '--from', `sqlite://${path.join(dir, 'hubauth.db')}`, '--to', pg.fullUrl(target)]);
    writeFileSync(artifactPath(`${PREFIX}-db-copy.txt`), copied.stdout + copied.stderr);
    assert.match(copied.stdout, /copied/);

    server = await startHubauthServe({ name: `${PREFIX}-copy-postgres`, dir, port, toml: sqliteToml(pgStorage(target)), env });
    try {
      assert.equal((await jwks(origin)).text, jwksBefore, 'the JWKS is byte-identical');
      const ui = await userinfo(origin, login.tokens.access_token);
      assert.equal(ui.status, 200, `the old access token works at /userinfo: ${ui.text}`);
      assert.equal(ui.json.preferred_username, 'ada');
      const res = await refresh(origin, hubClient, login.tokens.refresh_token);
      assert.equal(res.status, 200, `the old refresh token refreshes: ${res.text}`);
      assert.equal((await userinfo(origin, res.json.access_token)).status, 200);
      // The browser session was copied too: /authorize signs ada in without the form.
      const authorize = new URL('/authorize', origin);
      authorize.search = new URLSearchParams({
        response_type: 'code', client_id: 'jupyterhub', redirect_uri: hubClient.redirectUri, scope: 'openid', state: 's', prompt: 'none',
      });
      const sso = await browse(jar, authorize);
      assert.ok(sso.location?.href.startsWith(hubClient.redirectUri) && sso.location.searchParams.get('code'),
        `the copied session signs ada in (prompt=none): ${sso.status} ${sso.rawLocation}`);
    } finally {
      await server.stop();
    }
  });
});


