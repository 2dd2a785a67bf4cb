// Who gets into a REAL JupyterHub (6.1 + OAuthenticator 17.4 + configurable-http-proxy, from
// e2e/.venv) logging in through `hubauth serve`, driven by headless Chromium (playwright-core):
//
//  (d) a refused person sees hubauth's explainable 403 page (who, the rule, policy link, contact,
//      reason code, request id — the same id as in the audit log); artifacts/denied.png
//  (a) a person admitted ONLY through a pending GitHub team invitation (read with hubauth's
//      organisation credential) gets in, with the invited team as a hub group
//  (b) a workshop invite link (`hubauth invites create … --group workshop-2026`) admits a person in
//      no allowed group and puts them in the hub group workshop-2026
//  (e) a Canvas student lands in canvasauthenticator-style hub groups from their enrollments
//  (c) a person removed from the allowed upstream group loses hub access at the hub's next
//      auth refresh, without logging out (hubauth re-checks the upstream, revokes, the hub's
//      refresh_user fails, the hub asks for a new login, and hubauth then refuses it)
//
// One hubauth (oidc upstream + github + canvas connectors, so the hub's button leads to hubauth's
// chooser), one JupyterHub, one upstream oidc-provider (child process) and in-process Node fakes of
// GitHub (e2e/fakes/github.mjs) and Canvas (e2e/fakes/canvas.mjs). Everything is killed in after().
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { launchChromium, screenshotter, loggedContext, jupyterhubApi, where as whereIn } from './lib/browser.mjs';
import {
  freePort, tempDir, run, artifactPath, killPidFile, HUBAUTH_BIN,
} from './lib/harness.mjs';
import { startJupyterHub, VENV_BIN } from './lib/jupyterhub.mjs';
import {
  startUpstream, generateJwks, startHubauthServe, oidcConnectorToml, tomlStr, tomlList,
} from './lib/upstream-oidc.mjs';
import { startGithubFake } from './fakes/github.mjs';
import { startCanvasFake } from './fakes/canvas.mjs';

const PREFIX = 'jha'; // artifact prefix
const API_TOKEN = randomBytes(24).toString('hex');
const HUB_SECRET = randomBytes(24).toString('hex');
const ADMIN_TOKEN = randomBytes(24).toString('hex');
const AUTH_REFRESH_AGE = 5; // s: JupyterHub's c.Authenticator.auth_refresh_age
const RECHECK_AFTER = 2; // s: hubauth's [access] recheck_after
const POLICY_URL = 'https://hub.example.org/who-can-use-this-hub';
const CONTACT = 'hub-admins@example.org';
const CLIENT_NAME = 'Workshop Hub';
const HUB_ALLOWED_GROUPS = ['upstream:physics', 'github:carpentries:instructors', 'workshop-2026', 'course::1234'];

const GH = {
  clientId: 'Iv1.e2e-github-client',
  clientSecret: randomBytes(20).toString('hex'),
  orgToken: `ghp_${randomBytes(18).toString('hex')}`,
};
const CANVAS = { clientId: '10000000000042', clientSecret: randomBytes(20).toString('hex') };

/** Has a pending invitation (by login) to carpentries, teams instructors + 2 more; nothing else. */
const PENNY = {
  id: 4242,
  login: 'penny-invitee',
  name: 'Penny Invitee',
  emails: [{ email: 'penny@example.org', primary: true, verified: true }],
  // GitHub lists an invited person's organisation membership as `pending`.
  orgs: [{ org: 'carpentries', state: 'pending', role: 'member' }],
  teams: [],
};
/** A GitHub account with no organisation at all: only a workshop invite can let her in. */
const WANDA = {
  id: 5151,
  login: 'wanda-workshop',
  name: 'Wanda Workshop',
  emails: [{ email: 'wanda@example.org', primary: true, verified: true }],
  orgs: [],
  teams: [],
};
/**
 * An instructor (active team carpentries:instructors, so admitted) who also created free GitHub
 * organisations named after the hub's admin group and the demo's: she must not become an admin.
 */
const MALLORY = {
  id: 6666,
  login: 'mallory-gh',
  name: 'Mallory',
  emails: [{ email: 'mallory@example.org', primary: true, verified: true }],
  orgs: [
    { org: 'carpentries', state: 'active', role: 'member' },
    { org: 'hub-admins', state: 'active', role: 'admin' },
    { org: 'admins', state: 'active', role: 'admin' },
  ],
  teams: [{ org: 'carpentries', slug: 'instructors', name: 'Instructors' }],
};
const INVITATIONS = [
  // Penny's invitation is on page 2 of the organisation's list (maxPerPage 2 in the fake), and
  // its teams span two pages: hubauth must follow GitHub's Link headers.
  { id: 7001, org: 'carpentries', login: 'someone-else', email: null, role: 'direct_member', teams: [{ slug: 'instructors', name: 'Instructors' }] },
  { id: 7002, org: 'carpentries', login: null, email: 'not-penny@example.org', role: 'direct_member', teams: [{ slug: 'maintainers', name: 'Maintainers' }] },
  {
    id: 7003,
    org: 'carpentries',
    login: 'penny-invitee',
    email: null,
    role: 'direct_member',
    teams: [
      { slug: 'instructors', name: 'Instructors' },
      { slug: 'helpers', name: 'Helpers' },
      { slug: 'lesson-maintainers', name: 'Lesson Maintainers' },
    ],
  },
];

/** A Canvas student: course 1234 (+ 2 more active courses, so the course list has 2 pages). */
const STU = {
  id: 501,
  name: 'Stu Dent',
  loginId: 'stu-dent',
  primaryEmail: 'stu@uni.example',
  courses: [
    { id: 1234, name: 'Data 8: Foundations of Data Science', courseCode: 'DATA 8', term: { id: 7, name: 'Spring 2026' }, enrollments: [{ type: 'student', role: 'StudentEnrollment', state: 'active' }] },
    { id: 2001, name: 'Physics 7A', courseCode: 'PHYS 7A', term: { id: 7, name: 'Spring 2026' }, enrollments: [{ type: 'student', role: 'StudentEnrollment', state: 'active' }] },
    { id: 3001, name: 'Stat 20', courseCode: 'STAT 20', term: { id: 7, name: 'Spring 2026' }, enrollments: [{ type: 'ta', role: 'TaEnrollment', state: 'active' }] },
    { id: 999, name: 'Old Course', courseCode: 'OLD 1', term: { id: 3, name: 'Fall 2024' }, enrollments: [{ type: 'student', role: 'StudentEnrollment', state: 'completed' }] },
  ],
  groups: [
    { id: 77, name: 'Lab Group 3', courseId: 1234 },
    { id: 78, name: 'Peer Mentors', courseId: null }, // an account-level group: no course, no hub group
  ],
};
const STU_HUB_GROUPS = [
  'course::1234', 'course::1234::enrollment_type::student', 'course::1234::group::Lab Group 3',
  'course::2001', 'course::2001::enrollment_type::student',
  'course::3001', 'course::3001::enrollment_type::ta',
].sort();

let upstream; let github; let canvas; let hubauth; let hubauthEnv; let hub; let hubUrl; let workDir; let browser;
let proxyPidFile;

// ------------------------------------------------------------------ helpers

const screenshot = screenshotter(PREFIX);
const api = (pathname, options) => jupyterhubApi(hubUrl, API_TOKEN, pathname, options);
const newContext = (label) => loggedContext(browser, { prefix: PREFIX, label, baseURL: hubUrl });
const where = (page) => whereIn(page, PREFIX);

const bodyText = async (page) => (await page.textContent('body')).replace(/\s+/g, ' ');

function hubauthLog() {
  return readFileSync(hubauth.proc.logFile, 'utf8');
}

/** hubauth's audit_events rows (read with the venv's Python sqlite3; the DB is in WAL mode). */
async function auditEvents(match = {}) {
  const script = `
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
db.row_factory = sqlite3.Row
rows = [dict(r) for r in db.execute("SELECT * FROM audit_events ORDER BY id")]
print(json.dumps(rows))
`;
  const { stdout } = await run(path.join(VENV_BIN, 'python'), ['-c', script, path.join(workDir, 'hubauth.db')]);
  return JSON.parse(stdout).filter((r) => Object.entries(match).every(([k, v]) => r[k] === v));
}

/** Poll until `fn()` returns a truthy value (the audit log is written by a group-commit thread). */
async function eventually(fn, { timeoutMs = 5000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(200);
  }
  assert.fail(`${what}: not true after ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
}

/** At the upstream oidc-provider: log in as `user` and consent, as often as it asks. */
async function upstreamInteraction(page, user) {
  for (let step = 0; step < 4; step += 1) {
    if (!page.url().startsWith(upstream.issuer)) return;
    const login = page.locator('input[name="login"]');
    const consent = page.locator('form:has(input[name="prompt"][value="consent"]) button[type="submit"]');
    const what = await Promise.race([
      login.waitFor({ timeout: 20_000 }).then(() => 'login', () => null),
      consent.waitFor({ timeout: 20_000 }).then(() => 'consent', () => null),
      page.waitForURL((u) => !u.href.startsWith(upstream.issuer), { timeout: 20_000 }).then(() => 'left', () => null),
    ]);
    if (what === 'left') return;
    if (what === 'login') {
      await login.fill(user);
      await page.fill('input[name="password"]', `${user}-any-password`);
      await screenshot(page, `upstream-login-${user}`);
      await page.locator('button[type="submit"]').click();
    } else if (what === 'consent') {
      await screenshot(page, `upstream-consent-${user}`);
      await consent.click();
    } else {
      assert.fail(`stuck at the upstream ${await where(page)}`);
    }
    await page.waitForLoadState('load').catch(() => {});
  }
}

/**
 * From wherever `page` is, on its way to hubauth's chooser (or already there): pick `connectorId`,
 * get through the provider, and return hubauth's answer on /callback/{connectorId}
 * ({ callback, outcome: 'hub' | 'refused' }). 'hub' waits for the hub's oauth_callback too.
 */
async function chooseAndSignIn(page, connectorId, { upstreamUser } = {}) {
  const choice = page.locator(`a[data-connector="${connectorId}"]`);
  await choice.waitFor({ timeout: 30_000 }).catch(async () => assert.fail(`expected hubauth's chooser ${await where(page)}`));
  assert.equal(new URL(page.url()).origin, hubauth.issuer, 'the chooser is hubauth\'s');
  const callback = page.waitForResponse((r) => r.url().startsWith(`${hubauth.issuer}/callback/${connectorId}`), { timeout: 60_000 });
  callback.catch(() => {});
  const hubCallback = page.waitForResponse((r) => r.url().startsWith(`${hubUrl}/hub/oauth_callback`), { timeout: 60_000 });
  hubCallback.catch(() => {});
  await choice.click();
  if (connectorId === 'upstream') {
    await page.waitForURL((u) => u.href.startsWith(upstream.issuer) || u.href.startsWith(hubauth.issuer + '/callback'), { timeout: 30_000 }).catch(() => {});
    await upstreamInteraction(page, upstreamUser);
  }
  const cb = await callback.catch(async () => assert.fail(`never reached hubauth's /callback/${connectorId} ${await where(page)}`));
  if (cb.status() === 403) {
    await page.waitForLoadState('load');
    return { callback: cb, outcome: 'refused' };
  }
  assert.ok([302, 303].includes(cb.status()), `hubauth's callback redirects to the hub (got ${cb.status()}) ${await where(page)}`);
  const hcb = await hubCallback.catch(async () => assert.fail(`never reached the hub's oauth_callback ${await where(page)}`));
  await page.waitForLoadState('load');
  return { callback: cb, hubCallback: hcb, outcome: 'hub' };
}

/** Hub login page → "Sign in with hubauth" → chooser → connector. */
async function signInAtHub(page, connectorId, opts) {
  await page.goto('/hub/login');
  const link = page.locator('a[href*="oauth_login"]');
  await link.first().waitFor({ timeout: 30_000 }).catch(async () => assert.fail(`expected the hub's login page ${await where(page)}`));
  await link.first().click();
  return chooseAndSignIn(page, connectorId, opts);
}

async function expectHubHome(page, user) {
  await page.waitForURL(/\/hub\/home/, { timeout: 30_000 }).catch(async () => assert.fail(`expected the hub home page ${await where(page)}`));
  assert.ok((await bodyText(page)).includes(user), `hub home shows ${user}`);
}

/** The refusal page: who, with which connector, the rule sentence, policy and contact, code and id. */
async function assertDeniedPage(page, callback, { user, connectorName, sentence }) {
  assert.equal(callback.status(), 403, 'the refusal is an HTTP 403');
  assert.equal(new URL(page.url()).origin, hubauth.issuer, 'the refusal page is hubauth\'s');
  const text = await bodyText(page);
  assert.match(text, new RegExp(`No access to ${CLIENT_NAME}`), 'the heading names the hub (client)');
  assert.ok(text.includes(`You signed in as ${user} with ${connectorName}, but ${sentence}.`),
    `says who signed in and the rule: ${text}`);
  assert.equal(await page.locator(`a[href="${POLICY_URL}"]`).count(), 1, 'links the access policy');
  assert.equal(await page.locator(`a[href="mailto:${CONTACT}"]`).count(), 1, 'links the contact');
  const m = text.match(/Reason: not_allowed · Request ID: ([a-z2-7]{12})/);
  assert.ok(m, `shows "Reason: not_allowed" and a request id: ${text}`);
  assert.equal(callback.headers()['x-request-id'], m[1], 'the page\'s request id is the response\'s X-Request-Id');
  return { requestId: m[1], text };
}

// ------------------------------------------------------------------ set-up

describe('JupyterHub access through hubauth: pending GitHub invitations, workshop invites, Canvas groups, live revocation, explainable refusals', { timeout: 240_000 }, () => {
  before(async () => {
    workDir = tempDir('jupyterhub-access');
    const hubPort = await freePort();
    const hubApiPort = await freePort();
    const proxyApiPort = await freePort();
    const hubauthPort = await freePort();
    hubUrl = `http://127.0.0.1:${hubPort}`;
    const issuer = `http://127.0.0.1:${hubauthPort}`;

    upstream = await startUpstream({
      name: `${PREFIX}-upstream`,
      redirectUris: [`${issuer}/callback/upstream`],
      jwks: generateJwks({ kid: 'jha-key-1' }),
    });
    github = await startGithubFake({
      clientId: GH.clientId,
      clientSecret: GH.clientSecret,
      callbackUrl: `${issuer}/callback/github`,
      users: [PENNY, WANDA, MALLORY],
      invitations: INVITATIONS,
      orgCredentials: { [GH.orgToken]: ['carpentries'] },
      maxPerPage: 2,
    });
    canvas = await startCanvasFake({
      clientId: CANVAS.clientId,
      clientSecret: CANVAS.clientSecret,
      callbackUrl: `${issuer}/callback/canvas`,
      users: [STU],
      maxPerPage: 2,
    });

    const toml = `# written by e2e/jupyterhub-access.test.mjs
issuer = ${tomlStr(issuer)}
listen = ${tomlStr(`127.0.0.1:${hubauthPort}`)}

[storage]
url = "sqlite://hubauth.db"

[access]
allowed_groups = ["upstream:physics"]
recheck_after = "${RECHECK_AFTER}s"
policy_url = ${tomlStr(POLICY_URL)}
contact = ${tomlStr(CONTACT)}

[invites]
continue_url = ${tomlStr(`${hubUrl}/hub/oauth_login`)}

[admin]
api_tokens = [{ env = "HUBAUTH_ADMIN_TOKEN" }]

[[clients]]
id = "jupyterhub"
name = ${tomlStr(CLIENT_NAME)}
secret = { env = "HUBAUTH_CLIENT_SECRET" }
redirect_uris = [${tomlStr(`${hubUrl}/hub/oauth_callback`)}]
post_logout_redirect_uris = [${tomlStr(`${hubUrl}/hub/`)}]
[clients.hub]
allowed_groups = ${tomlList(HUB_ALLOWED_GROUPS)}
admin_groups = ["hub-admins"]
secret_env = "HUBAUTH_CLIENT_SECRET"

${oidcConnectorToml(upstream, { name: 'University login' })}
[[connectors]]
type = "github"
id = "github"
name = "GitHub"
icon = "github"
client_id = ${tomlStr(GH.clientId)}
client_secret = { env = "GITHUB_CLIENT_SECRET" }
github_url = ${tomlStr(github.base)}
api_url = ${tomlStr(github.apiUrl)}
organization_credential = { env = "GITHUB_ORG_TOKEN" }
organizations = ["carpentries"]
[[connectors.groups]]
from = "github_team"
name = "{org}:{team}"
include_pending = true
[[connectors.groups]]
from = "github_org"
name = "{org}"
[connectors.access]
allowed_organizations = ["carpentries:instructors"]
admit_pending = true

[[connectors]]
type = "canvas"
id = "canvas"
name = "bCourses"
icon = "canvas"
canvas_url = ${tomlStr(canvas.base)}
client_id = ${tomlStr(CANVAS.clientId)}
client_secret = { env = "CANVAS_CLIENT_SECRET" }
groups_preset = "canvasauthenticator"
[connectors.access]
allowed_courses = [1234]
`;
    hubauthEnv = {
      HUBAUTH_CRYPT_KEY: randomBytes(32).toString('hex'),
      HUBAUTH_UPSTREAM_SECRET: upstream.clientSecret,
      HUBAUTH_CLIENT_SECRET: HUB_SECRET,
      HUBAUTH_ADMIN_TOKEN: ADMIN_TOKEN,
      GITHUB_CLIENT_SECRET: GH.clientSecret,
      GITHUB_ORG_TOKEN: GH.orgToken,
      CANVAS_CLIENT_SECRET: CANVAS.clientSecret,
    };
    hubauth = await startHubauthServe({ name: `${PREFIX}-hubauth`, dir: workDir, port: hubauthPort, toml, env: hubauthEnv });

    const { stdout: fragment } = await run(HUBAUTH_BIN, ['jupyterhub-config', '--config', hubauth.configPath, '--client', 'jupyterhub'], {
      env: { ...process.env, ...hubauthEnv },
    });
    writeFileSync(artifactPath(`${PREFIX}-hubauth-fragment.py`), fragment);
    for (const g of HUB_ALLOWED_GROUPS) assert.ok(fragment.includes(JSON.stringify(g)), `the fragment's allowed_groups has ${g}`);

    ({ proc: hub, proxyPidFile } = await startJupyterHub({
      name: PREFIX, workDir, fragment, hubUrl, hubApiPort, proxyApiPort,
      adminToken: API_TOKEN, authRefreshAge: AUTH_REFRESH_AGE,
      env: { HUBAUTH_CLIENT_SECRET: HUB_SECRET },
    }));

    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await hub?.stop();
    if (proxyPidFile && existsSync(proxyPidFile)) killPidFile(proxyPidFile);
    await hubauth?.stop();
    await upstream?.stop();
    if (github) {
      writeFileSync(artifactPath(`${PREFIX}-github-requests.json`), JSON.stringify(github.requests(), null, 2));
      await github.close();
    }
    if (canvas) {
      writeFileSync(artifactPath(`${PREFIX}-canvas-requests.json`), JSON.stringify(canvas.requests(), null, 2));
      await canvas.close();
    }
    if (workDir && !process.env.E2E_KEEP_TMP) rmSync(workDir, { recursive: true, force: true });
  });

  // ---------------------------------------------------------------- (d)
  it('(d) a refused person sees hubauth\'s explainable 403 page: who, the rule, policy link, contact, reason and request id', async () => {
    const { page, close } = await newContext('denied-bob');
    try {
      const { callback, outcome } = await signInAtHub(page, 'upstream', { upstreamUser: 'bob' });
      await screenshot(page, 'denied', artifactPath('denied.png'));
      assert.equal(outcome, 'refused', `bob is refused by hubauth ${await where(page)}`);
      const { requestId } = await assertDeniedPage(page, callback, {
        user: 'bob',
        connectorName: 'University login',
        sentence: 'this hub admits people with membership of one of the groups upstream:physics, and your account has none of these',
      });
      assert.equal(await page.getByRole('link', { name: 'Sign in with another account' }).count(), 1,
        'several connectors: the page offers another account');
      writeFileSync(artifactPath(`${PREFIX}-denied.html`), await page.content());

      // The same reason code and request id are in the audit log and the log line.
      const [ev] = await eventually(async () => {
        const rows = await auditEvents({ kind: 'login_denied', username: 'bob' });
        return rows.length ? rows : null;
      }, { what: 'login_denied audit event for bob' });
      assert.equal(ev.reason, 'not_allowed');
      assert.equal(ev.request_id, requestId, 'the audit event has the page\'s request id');
      assert.equal(ev.connector_id, 'upstream');
      assert.equal(ev.client_id, 'jupyterhub');
      const line = hubauthLog().split('\n').find((l) => l.includes('sign-in refused by the access policy') && l.includes(requestId));
      assert.ok(line, `hubauth logged the refusal with request id ${requestId}`);
      assert.match(line, /user=bob/);
      assert.match(line, /reason="?not_allowed"?/);

      const r = await api('/users/bob');
      assert.equal(r.status, 404, 'bob never reached the hub');
    } finally {
      await close();
    }
  });

  // ---------------------------------------------------------------- (a)
  it('(a) a person admitted only through a pending GitHub team invitation gets into the hub, in group carpentries:instructors', async () => {
    const { page, close } = await newContext('github-pending-penny');
    try {
      const mark = github.mark();
      github.actAs(PENNY.login);
      const { outcome, hubCallback } = await signInAtHub(page, 'github');
      assert.equal(outcome, 'hub', `penny is admitted by hubauth ${await where(page)}`);
      assert.ok([302, 303].includes(hubCallback.status()), `the hub admits penny (oauth_callback ${hubCallback.status()})`);
      await expectHubHome(page, PENNY.login);
      await screenshot(page, 'hub-home-penny');

      const r = await api(`/users/${PENNY.login}`);
      assert.equal(r.status, 200, r.text);
      writeFileSync(artifactPath(`${PREFIX}-api-user-penny.json`), JSON.stringify(r.json, null, 2));
      const expected = ['github:carpentries:helpers', 'github:carpentries:instructors', 'github:carpentries:lesson-maintainers'];
      assert.deepEqual([...r.json.groups].sort(), expected, 'hub groups: every team of the pending invitation (include_pending rule)');
      assert.deepEqual([...r.json.auth_state.oauth_user.groups].sort(), expected, 'hubauth\'s userinfo groups');
      assert.equal(r.json.auth_state.oauth_user.email, 'penny@example.org');
      const g = await api(`/groups/${encodeURIComponent('github:carpentries:instructors')}`);
      assert.equal(g.status, 200, g.text);
      assert.ok(g.json.users.includes(PENNY.login), 'group carpentries:instructors contains penny');

      // Why: the pending invitation, nothing else (she is in no allowed group, no active team).
      const [ev] = await eventually(async () => {
        const rows = await auditEvents({ kind: 'login', username: PENNY.login });
        return rows.length ? rows : null;
      }, { what: 'login audit event for penny' });
      assert.equal(ev.reason, 'pending_invitation', `admitted by the pending invitation: ${JSON.stringify(ev)}`);
      assert.equal(ev.connector_id, 'github');

      // What hubauth asked GitHub: PKCE S256 at authorize, the verifier at the token endpoint, the
      // API with GitHub's media type and version, every Link page of the invitation lists, the
      // invitations with the organisation credential (not penny's token).
      const reqs = github.requests(mark);
      const authz = reqs.find((q) => q.path === '/login/oauth/authorize');
      assert.equal(authz.query.code_challenge_method, 'S256');
      assert.equal(authz.query.client_id, GH.clientId);
      assert.equal(authz.query.redirect_uri, `${hubauth.issuer}/callback/github`);
      assert.deepEqual(authz.query.scope.split(/[ ,]+/).sort(), ['read:org', 'read:user', 'user:email']);
      const tok = reqs.find((q) => q.path === '/login/oauth/access_token');
      assert.equal(tok.status, 200);
      assert.match(tok.form.code_verifier, /^<redacted \d+ chars>$/, 'hubauth sent a code_verifier');
      assert.match(tok.accept ?? '', /application\/json/, 'token request asks for JSON');
      const apiReqs = reqs.filter((q) => q.path.startsWith('/api/v3/'));
      assert.ok(apiReqs.length >= 6, `API requests: ${apiReqs.map((q) => q.path).join(', ')}`);
      for (const q of apiReqs) {
        assert.match(q.accept ?? '', /application\/vnd\.github\+json/, `${q.path} Accept`);
        assert.equal(q.apiVersion, '2022-11-28', `${q.path} X-GitHub-Api-Version`);
        assert.equal(q.status, 200, `${q.path}?${new URLSearchParams(q.query)} answered ${q.status}`);
      }
      const invPages = github.apiRequests('/orgs/carpentries/invitations', mark).map((q) => q.query.page ?? '1');
      assert.deepEqual(invPages, ['1', '2'], 'both pages of the organisation\'s invitations were read');
      const teamPages = github.apiRequests('/orgs/carpentries/invitations/7003/teams', mark).map((q) => q.query.page ?? '1');
      assert.deepEqual(teamPages, ['1', '2'], 'both pages of the invitation\'s teams were read');
      assert.ok(github.apiRequests('/orgs/carpentries/invitations/7001/teams', mark).length === 0, 'only penny\'s invitation\'s teams were read');
      for (const p of ['/user', '/user/emails', '/user/memberships/orgs', '/user/teams']) {
        assert.ok(github.apiRequests(p, mark).length >= 1, `hubauth read ${p}`);
      }
    } finally {
      await close();
    }
  });

  // ---------------------------------------------------------------- (b)
  it('(f) a GitHub organisation named after the hub\'s admin group makes nobody an admin', async () => {
    const { page, close } = await newContext('mallory');
    try {
      github.actAs(MALLORY.login);
      const { outcome } = await signInAtHub(page, 'github');
      assert.equal(outcome, 'hub', `mallory is admitted as an instructor ${await where(page)}`);
      await expectHubHome(page, MALLORY.login);
      const r = await api(`/users/${MALLORY.login}`);
      assert.equal(r.status, 200, r.text);
      writeFileSync(artifactPath(`${PREFIX}-api-user-mallory.json`), JSON.stringify(r.json, null, 2));
      assert.equal(r.json.admin, false, 'the hub\'s admin_groups = ["hub-admins"] does not match her organisation');
      const groups = [...r.json.groups].sort();
      assert.deepEqual(groups, ['github:admins', 'github:carpentries', 'github:carpentries:instructors', 'github:hub-admins'],
        'her organisations are groups only in the github: namespace');
      assert.ok(!groups.includes('hub-admins') && !groups.includes('admins'));
    } finally {
      await close();
    }
  });

  it('(b) a workshop invite link admits a person in no allowed group and puts them in the hub group workshop-2026', async () => {
    const { page, context, close } = await newContext('invite-wanda');
    try {
      github.actAs(WANDA.login);
      // Without the invite, wanda (no organisation, no allowed group) is refused.
      const refused = await signInAtHub(page, 'github');
      assert.equal(refused.outcome, 'refused', `without an invite wanda is refused ${await where(page)}`);
      await screenshot(page, 'denied-wanda-before-invite');
      await assertDeniedPage(page, refused.callback, {
        user: WANDA.login,
        connectorName: 'GitHub',
        sentence: 'this hub admits people with membership of one of the groups upstream:physics; or membership of carpentries:instructors on GitHub, and your account has none of these',
      });
      assert.ok((await bodyText(page)).includes('If you were given an invitation link'), 'the refusal mentions invitation links');

      // An organiser creates the invite with the CLI while hubauth is running.
      const created = await run(HUBAUTH_BIN, [
        'invites', 'create', '--config', hubauth.configPath, '--expires-in', '1h',
        '--group', 'workshop-2026', '--note', 'Carpentries workshop, June 2026',
      ], { env: { ...process.env, ...hubauthEnv } });
      writeFileSync(artifactPath(`${PREFIX}-invites-create.txt`), created.stdout + created.stderr);
      const idLine = created.stdout.match(/^invite (\S+) \(expires at (\d+)\)$/m);
      assert.ok(idLine, `invites create prints the id: ${created.stdout}`);
      const inviteId = idLine[1];
      const link = created.stdout.split('\n').map((l) => l.trim()).find((l) => l.startsWith(`${hubauth.issuer}/invite/`));
      assert.ok(link, `invites create prints the link: ${created.stdout}`);

      // The link, in the same browser: the invite page and its "Continue to the hub" button.
      const inviteResp = await page.goto(link);
      assert.equal(inviteResp.status(), 200, `the invite page opens ${await where(page)}`);
      await screenshot(page, 'invite-page');
      const text = await bodyText(page);
      assert.match(text, /You are invited/);
      assert.ok(text.includes('Carpentries workshop, June 2026'), 'the invite page shows the note');
      assert.ok(text.includes('as a member of workshop-2026'), 'the invite page names the group');
      const cont = page.getByRole('link', { name: 'Continue to the hub' });
      assert.equal(await cont.getAttribute('href'), `${hubUrl}/hub/oauth_login`, 'the button leads to the configured continue_url');
      const cookies = await context.cookies(hubauth.issuer);
      assert.ok(cookies.some((c) => c.name === 'hubauth_invite' && c.httpOnly), 'the browser now carries the invite (HttpOnly cookie)');
      await cont.click();

      const { outcome } = await chooseAndSignIn(page, 'github');
      assert.equal(outcome, 'hub', `with the invite wanda is admitted ${await where(page)}`);
      await expectHubHome(page, WANDA.login);
      await screenshot(page, 'hub-home-wanda');
      assert.ok(!(await context.cookies(hubauth.issuer)).some((c) => c.name === 'hubauth_invite'), 'the invite cookie is cleared after use');

      const r = await api(`/users/${WANDA.login}`);
      assert.equal(r.status, 200, r.text);
      writeFileSync(artifactPath(`${PREFIX}-api-user-wanda.json`), JSON.stringify(r.json, null, 2));
      assert.deepEqual(r.json.groups, ['workshop-2026'], 'hub group from the invite');
      const g = await api('/groups/workshop-2026');
      assert.equal(g.status, 200, g.text);
      assert.ok(g.json.users.includes(WANDA.login), 'group workshop-2026 contains wanda');

      const [ev] = await eventually(async () => {
        const rows = await auditEvents({ kind: 'login', username: WANDA.login });
        return rows.length ? rows : null;
      }, { what: 'login audit event for wanda' });
      assert.equal(ev.reason, 'invite');
      assert.ok(hubauthLog().split('\n').some((l) => l.includes('invite used') && l.includes(`invite=${inviteId}`) && l.includes(`user=${WANDA.login}`)),
        'hubauth logged the invite use');

      // The admin API and the CLI count the use.
      const list = await fetch(`${hubauth.issuer}/admin/api/invites`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      assert.equal(list.status, 200);
      const view = (await list.json()).find((i) => i.id === inviteId);
      assert.equal(view?.uses, 1, `the invite was used once: ${JSON.stringify(view)}`);
      assert.equal(view.state, 'open');
      assert.deepEqual(view.groups, ['workshop-2026']);
      const cli = await run(HUBAUTH_BIN, ['invites', 'list', '--config', hubauth.configPath], { env: { ...process.env, ...hubauthEnv } });
      assert.match(cli.stdout, new RegExp(`^${inviteId}\\s+open\\s+1\\s`, 'm'), `invites list: ${cli.stdout}`);

      // The invite keeps admitting her when hubauth re-checks her (recheck_after) on the hub's next
      // auth refresh: GitHub is read again, the invite's group stays.
      await page.goto('about:blank');
      await sleep((AUTH_REFRESH_AGE + 1) * 1000);
      const beforeRefresh = github.mark();
      const again = await context.request.get('/hub/home', { maxRedirects: 0 });
      assert.equal(again.status(), 200, `still in after the hub's refresh (got ${again.status()} → ${again.headers().location || ''})`);
      assert.ok(github.apiRequests('/user', beforeRefresh).length >= 1, 'hubauth re-read wanda at GitHub during the hub\'s refresh');
      const afterRefresh = await api(`/users/${WANDA.login}`);
      assert.deepEqual(afterRefresh.json.groups, ['workshop-2026'], 'still in workshop-2026 after the refresh');
    } finally {
      await close();
    }
  });

  // ---------------------------------------------------------------- (e)
  it('(e) a Canvas student lands in JupyterHub groups named from their enrollments (canvasauthenticator preset)', async () => {
    const { page, close } = await newContext('canvas-stu');
    try {
      const mark = canvas.mark();
      canvas.actAs(STU.id);
      const { outcome } = await signInAtHub(page, 'canvas');
      assert.equal(outcome, 'hub', `stu is admitted by hubauth ${await where(page)}`);
      await expectHubHome(page, STU.loginId);
      await screenshot(page, 'hub-home-stu');

      const r = await api(`/users/${STU.loginId}`);
      assert.equal(r.status, 200, r.text);
      writeFileSync(artifactPath(`${PREFIX}-api-user-stu.json`), JSON.stringify(r.json, null, 2));
      assert.deepEqual([...r.json.groups].sort(), STU_HUB_GROUPS, 'hub groups: course::{id}, ::enrollment_type::{type}, ::group::{name}');
      assert.equal(r.json.auth_state.oauth_user.name, STU.name);
      for (const name of ['course::1234', 'course::1234::enrollment_type::student', 'course::1234::group::Lab Group 3']) {
        const g = await api(`/groups/${encodeURIComponent(name)}`);
        assert.equal(g.status, 200, `${name}: ${g.text}`);
        assert.ok(g.json.users.includes(STU.loginId), `group ${name} contains stu`);
      }
      const [ev] = await eventually(async () => {
        const rows = await auditEvents({ kind: 'login', username: STU.loginId });
        return rows.length ? rows : null;
      }, { what: 'login audit event for stu' });
      assert.equal(ev.reason, 'allowed_course');

      // What hubauth asked Canvas: PKCE, the verifier, every page of the course list (active
      // enrollments, with terms), the groups.
      const authz = canvas.requestsTo('/login/oauth2/auth', mark)[0];
      assert.equal(authz.query.code_challenge_method, 'S256');
      assert.equal(authz.query.response_type, 'code');
      const tok = canvas.requestsTo('/login/oauth2/token', mark)[0];
      assert.equal(tok.status, 200);
      assert.equal(tok.form.grant_type, 'authorization_code');
      assert.match(tok.form.code_verifier, /^<redacted \d+ chars>$/);
      const courses = canvas.requestsTo('/api/v1/courses', mark);
      assert.deepEqual(courses.map((q) => q.query.page ?? '1'), ['1', '2'], 'both pages of the course list were read');
      for (const q of courses) {
        assert.equal(q.query.enrollment_state, 'active');
        assert.equal(q.query['include[]'], 'term');
        assert.equal(q.status, 200);
      }
      assert.ok(canvas.requestsTo('/api/v1/users/self/groups', mark).length >= 1, 'hubauth read the Canvas groups');
      assert.ok(canvas.requestsTo('/api/v1/users/self/profile', mark).length >= 1, 'hubauth read the profile');
    } finally {
      await close();
    }
  });

  // ---------------------------------------------------------------- (c)
  it('(c) removed from the allowed upstream group, alice loses hub access at the hub\'s next auth refresh without logging out', async () => {
    const { page, context, close } = await newContext('revoke-alice');
    try {
      const { outcome } = await signInAtHub(page, 'upstream', { upstreamUser: 'alice' });
      const loggedInAt = Date.now();
      assert.equal(outcome, 'hub', `alice is admitted ${await where(page)}`);
      await expectHubHome(page, 'alice');
      await screenshot(page, 'hub-home-alice');
      const before = await api('/users/alice');
      assert.deepEqual([...before.json.groups].sort(), ['upstream:hpc-users', 'upstream:physics']);
      const home1 = await context.request.get('/hub/home', { maxRedirects: 0 });
      assert.equal(home1.status(), 200, 'alice uses the hub');
      await page.goto('about:blank'); // no hub page polling in the background

      // At the upstream, alice leaves physics while her hub session goes on.
      const patched = await fetch(`${upstream.issuer}/__e2e/accounts/alice`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ groups: ['hpc-users'] }),
      });
      assert.equal(patched.status, 200);
      assert.deepEqual((await patched.json()).groups, ['hpc-users']);
      const changedAt = Date.now();
      await upstream.clearRequests();

      // Within auth_refresh_age of her login the hub does not ask hubauth: she is still in.
      const early = await context.request.get('/hub/home', { maxRedirects: 0 });
      const sinceLogin = (Date.now() - loggedInAt) / 1000;
      console.log(`# ${sinceLogin.toFixed(1)}s after login, right after the upstream change: /hub/home -> ${early.status()}`);
      if (sinceLogin < AUTH_REFRESH_AGE - 1) assert.equal(early.status(), 200, 'no refresh yet: still in');

      // Past both intervals, her next hub request in the same browser.
      await sleep(Math.max(AUTH_REFRESH_AGE, RECHECK_AFTER) * 1000 + 1500);
      const resp = await page.goto('/hub/home');
      const elapsed = ((Date.now() - changedAt) / 1000).toFixed(1);
      await screenshot(page, 'hub-after-revocation-alice');
      const landed = new URL(page.url());
      const first = resp.request().redirectedFrom();
      const firstResponse = first ? await first.response() : null;
      console.log(`# ${elapsed}s after the upstream change: GET /hub/home -> ${firstResponse?.status()} ${firstResponse?.headers().location}; landed on ${page.url()} (${resp.status()})`);
      assert.equal(first?.url(), `${hubUrl}/hub/home`, 'the request for /hub/home was redirected');
      assert.equal(firstResponse.status(), 302, 'the hub redirects instead of serving /hub/home');
      assert.equal(firstResponse.headers().location, '/hub/login?next=%2Fhub%2Fhome');
      assert.equal(landed.origin, hubUrl, `the hub answers ${await where(page)}`);
      assert.equal(landed.pathname, '/hub/login', `the hub no longer lets alice in: it asks her to log in ${await where(page)}`);
      assert.equal(landed.searchParams.get('next'), '/hub/home');
      assert.equal(resp.status(), 200);
      assert.equal(await page.locator('a[href*="oauth_login"]').count() > 0, true, 'the hub\'s login page with its Sign in button');

      // What happened behind it: hubauth re-read alice upstream (refresh grant + userinfo),
      // revoked her, the hub's refresh grant was refused and the hub gave up on her session.
      const upReqs = await upstream.requests();
      assert.ok(upReqs.some((q) => q.path === '/token' && q.form?.grant_type === 'refresh_token' && q.status === 200),
        `hubauth refreshed at the upstream: ${JSON.stringify(upReqs.map((q) => [q.method, q.path, q.status, q.form?.grant_type]))}`);
      const revokedLine = await eventually(() => hubauthLog().split('\n').find((l) => l.includes('access revoked') && l.includes('user=alice')),
        { what: 'hubauth log line "access revoked" for alice' });
      assert.match(revokedLine, /reason="?not_allowed"?/, revokedLine);
      const [ev] = await eventually(async () => {
        const rows = await auditEvents({ kind: 'access_revoked', username: 'alice' });
        return rows.length ? rows : null;
      }, { what: 'access_revoked audit event for alice' });
      assert.equal(ev.reason, 'not_allowed');
      assert.match(ev.detail ?? '', /physics/);
      // The hub's side (its log): userinfo answered 401 (hubauth: access withdrawn), the refresh
      // grant 400 invalid_grant, so OAuthenticator's refresh_user returned False.
      const hubLog = readFileSync(hub.logFile, 'utf8');
      assert.ok(hubLog.includes('"error_description": "access to this hub was withdrawn; sign in again"'),
        'the hub\'s userinfo call got hubauth\'s 401 for a withdrawn access');
      assert.ok(hubLog.includes('Error refreshing auth with current access_token for alice: HTTP 401'), 'hub: userinfo 401');
      assert.ok(hubLog.includes('"error": "invalid_grant"'), 'hub: the refresh grant was refused with invalid_grant');
      assert.ok(hubLog.includes('Error using refresh_token for alice: HTTP 400: Bad Request. Requiring fresh login.'),
        'hub: OAuthenticator gives up and requires a fresh login');
      // JupyterHub 6.1.1 then means to log "User alice has stale auth info. Login is required to
      // refresh." but, for a cookie-authenticated request, trips over its own missing
      // `_token_authenticated` attribute (AttributeError in BaseHandler.refresh_auth, caught by
      // prepare() as "Failed to get current user"); either way the request has no user and is sent
      // to the login page, as asserted above. Record which one happened.
      const hubPath = hubLog.includes('User alice has stale auth info. Login is required to refresh.')
        ? 'stale-auth warning'
        : hubLog.includes("object has no attribute '_token_authenticated'") ? 'AttributeError _token_authenticated (JupyterHub 6.1.1 bug)' : 'neither';
      console.log(`# JupyterHub's refresh_auth path: ${hubPath}`);
      assert.notEqual(hubPath, 'neither', 'JupyterHub dropped alice\'s session after the failed refresh');

      // The hub still lists her (JupyterHub never deletes users) with the groups of her last
      // successful login/refresh: a failed refresh_user does not sync groups. What changed is that
      // she cannot use the hub.
      const afterUser = await api('/users/alice');
      console.log(`# hub record of alice after revocation: groups=${JSON.stringify(afterUser.json?.groups)}`);
      assert.equal(afterUser.status, 200);
      assert.deepEqual([...afterUser.json.groups].sort(), ['upstream:hpc-users', 'upstream:physics'], 'JupyterHub keeps the stale groups');

      // Signing in again ends on hubauth's refusal page: her hubauth session was revoked too, so she
      // is asked again; the upstream signs her in (its own session) and hubauth refuses.
      await page.locator('a[href*="oauth_login"]').first().click();
      const again = await chooseAndSignIn(page, 'upstream', { upstreamUser: 'alice' });
      await screenshot(page, 'denied-alice-after-revocation');
      assert.equal(again.outcome, 'refused', `alice is refused at her next sign-in ${await where(page)}`);
      await assertDeniedPage(page, again.callback, {
        user: 'alice',
        connectorName: 'University login',
        sentence: 'this hub admits people with membership of one of the groups upstream:physics, and your account has none of these',
      });
    } finally {
      await close();
    }
  });
});
