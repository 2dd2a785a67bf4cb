// The README's "Try it with a real JupyterHub" steps, taken from README.md and run as written, then
// a person in headless Chromium: `ada` signs in through the hub and reaches a *running* JupyterLab
// (/user/ada/lab), and `olivia` meets hubauth's refusal page with its reason code (`not_allowed`).
//
// What is run is the README's own ```sh block under that heading: the lines before
// "# terminal 2" as terminal 1 (the broker, `cargo run --release -- demo …`), the rest as terminal 2
// (one `bash -e` script ending in the hub in the foreground). Adapted, and only this:
//  - "in the repository" is a copy of this working tree (tracked and untracked, not ignored files)
//    in a scratch folder, its `target` a link to this repository's, so the repository's
//    `git status` stays clean, a developer's own ./hubauth-data is left alone, and the release
//    build is shared;
//  - terminal 2's PATH starts with e2e/.venv/bin, so its `pip install jupyterhub oauthenticator
//    jupyterlab` is the test venv's pip (already satisfied by the pinned e2e/requirements.txt), and
//    `npm install -g` installs into a scratch prefix (NPM_CONFIG_PREFIX), not the machine's.
// The hub's files land in /tmp/hubauth-hub, as the README says; the test empties it before and after.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, mkdirSync, symlinkSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { launchChromium, screenshotter, loggedContext, where as whereIn } from './lib/browser.mjs';
import {
  REPO_ROOT, startProcess, run, waitForHttp, registerPidFile, killPidFile, DEMO_USERS,
} from './lib/harness.mjs';
import { VENV_BIN } from './lib/jupyterhub.mjs';

const PREFIX = 'readme';
const HEADING = '### Try it with a real JupyterHub';
const HUB_DIR = '/tmp/hubauth-hub'; // the README's scratch folder for the hub
// The simple spawner's home for each person (/tmp/<username>): removed afterwards if this test made
// it, so that a later try as another (non-root) user is not refused its own home.
const SPAWNER_HOMES = ['/tmp/ada', '/tmp/olivia'];
// The release build may be cold (≈ 10 min on 2 cores), JupyterLab's first start slow.
const BUILD_TIMEOUT_MS = 45 * 60_000;

/** The README's try-it block, split into its two terminals. */
function tryItSteps(readme) {
  const at = readme.indexOf(`\n${HEADING}\n`);
  assert.ok(at >= 0, `README.md has a "${HEADING}" section`);
  const fence = readme.slice(at).match(/\n```sh\n([\s\S]*?)\n```\n/);
  assert.ok(fence, `the "${HEADING}" section has a \`\`\`sh block`);
  const lines = fence[1].split('\n');
  const split = lines.findIndex((l) => /^#\s*terminal 2\b/.test(l));
  assert.ok(split > 0, 'the block has a "# terminal 2" part after terminal 1');
  const terminal1 = lines.slice(0, split).map((l) => l.replace(/\s+#.*$/, '')).filter((l) => l.trim() !== '');
  assert.equal(terminal1.length, 1, `terminal 1 is one command: ${JSON.stringify(terminal1)}`);
  const hubUrl = terminal1[0].match(/--hub-url\s+(\S+)/)?.[1] ?? 'http://127.0.0.1:8000';
  const listen = terminal1[0].match(/--listen\s+(\S+)/)?.[1] ?? '127.0.0.1:5556';
  return { terminal1: terminal1[0], terminal2: lines.slice(split).join('\n'), hubUrl: hubUrl.replace(/\/$/, ''), listen };
}

/** A scratch copy of this working tree at a path stable per repository (cargo's fingerprints stay valid). */
async function scratchCopy() {
  const id = createHash('sha256').update(REPO_ROOT).digest('hex').slice(0, 10);
  const root = path.join(tmpdir(), `hubauth-e2e-readme-${id}`);
  const repo = path.join(root, 'repo');
  rmSync(repo, { recursive: true, force: true });
  mkdirSync(repo, { recursive: true });
  // Files as they are in the working tree (uncommitted edits included), mtimes kept.
  await run('bash', ['-c',
    'git ls-files -z --cached --others --exclude-standard | xargs -0 sh -c \'for f; do [ -e "$f" ] && printf "%s\\0" "$f"; done\' _ '
    + '| tar --null -T - -cf - | tar -xf - -C "$1"', '_', repo], { cwd: REPO_ROOT, timeout: 120_000 });
  // Its own git history of one commit, so that what the steps leave behind shows in `git status`.
  const git = ['-c', 'user.name=e2e', '-c', 'user.email=e2e@localhost', '-c', 'commit.gpgsign=false'];
  await run('git', ['init', '-q'], { cwd: repo });
  await run('git', [...git, 'add', '-A'], { cwd: repo, timeout: 120_000 });
  await run('git', [...git, 'commit', '-q', '-m', 'working tree'], { cwd: repo, timeout: 120_000 });
  mkdirSync(path.join(REPO_ROOT, 'target'), { recursive: true });
  symlinkSync(path.join(REPO_ROOT, 'target'), path.join(repo, 'target'));
  const npmPrefix = path.join(root, 'npm-global');
  mkdirSync(npmPrefix, { recursive: true });
  return { root, repo, npmPrefix };
}

/** Fails with a clear message when something already listens on `port` (the README's ports are fixed). */
async function assertPortFree(host, port, what) {
  const busy = await new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
  assert.equal(busy, false, `${host}:${port} (${what}) is already in use: the README's steps need it free`);
}

/** Waits until `proc` has printed a line matching `re`; fails if it exits first. */
async function waitForOutput(proc, re, { timeoutMs, what }) {
  const deadline = Date.now() + timeoutMs;
  let exited = null;
  proc.exited.then((e) => { exited = e; });
  while (Date.now() < deadline) {
    if (re.test(proc.output())) return;
    if (exited) throw new Error(`${what} exited (${JSON.stringify(exited)}); log ${proc.logFile}:\n${proc.output().slice(-4000)}`);
    await sleep(250);
  }
  throw new Error(`${what}: no ${re} after ${timeoutMs} ms; log ${proc.logFile}:\n${proc.output().slice(-4000)}`);
}

/** SIGTERM to the process group, time for JupyterHub to stop its servers and proxy, then stop(). */
async function stopGracefully(proc, ms = 30_000) {
  if (!proc) return;
  if (proc.child.exitCode === null && proc.child.signalCode === null) {
    try { process.kill(-proc.child.pid, 'SIGTERM'); } catch { /* gone */ }
    await Promise.race([proc.exited, sleep(ms)]);
  }
  await proc.stop();
}

describe("the README's try-it steps, run as written", () => {
  const steps = tryItSteps(readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8'));
  const [listenHost, listenPort] = [steps.listen.replace(/:\d+$/, ''), Number(steps.listen.match(/:(\d+)$/)[1])];
  const hub = new URL(steps.hubUrl);
  const issuer = `http://${steps.listen}`;
  const screenshot = screenshotter(PREFIX);
  const where = (page) => whereIn(page, PREFIX);
  let scratch; let terminal1; let terminal2; let browser; let homesMadeHere = [];

  before(async () => {
    homesMadeHere = SPAWNER_HOMES.filter((home) => !existsSync(home));
    await assertPortFree(listenHost, listenPort, 'the demo broker');
    await assertPortFree(hub.hostname, Number(hub.port || 80), 'the hub');
    scratch = await scratchCopy();
    rmSync(HUB_DIR, { recursive: true, force: true });
    registerPidFile(path.join(HUB_DIR, 'jupyterhub-proxy.pid'));

    terminal1 = startProcess('bash', ['-c', steps.terminal1], {
      logName: `${PREFIX}-terminal1`, cwd: scratch.repo, env: { NO_COLOR: '1' },
    });
    await waitForOutput(terminal1, /hubauth demo is listening on /, { timeoutMs: BUILD_TIMEOUT_MS, what: `terminal 1 (${steps.terminal1})` });
    await waitForHttp(`${issuer}/.well-known/openid-configuration`, { proc: terminal1, what: 'the demo broker' });

    terminal2 = startProcess('bash', ['-e', '-c', steps.terminal2], {
      logName: `${PREFIX}-terminal2`,
      cwd: scratch.repo,
      env: {
        PATH: `${VENV_BIN}:${path.join(scratch.npmPrefix, 'bin')}:${process.env.PATH}`,
        NPM_CONFIG_PREFIX: scratch.npmPrefix,
        NPM_CONFIG_AUDIT: 'false',
        NPM_CONFIG_FUND: 'false',
      },
    });
    await waitForHttp(`${steps.hubUrl}/hub/api/`, { proc: terminal2, timeoutMs: 5 * 60_000, what: 'the hub started by terminal 2' });
    browser = await launchChromium();
  }, { timeout: BUILD_TIMEOUT_MS + 10 * 60_000 });

  after(async () => {
    await browser?.close();
    await stopGracefully(terminal2);
    killPidFile(path.join(HUB_DIR, 'jupyterhub-proxy.pid'));
    await terminal1?.stop();
    if (!process.env.E2E_KEEP_TMP) {
      rmSync(HUB_DIR, { recursive: true, force: true });
      for (const home of homesMadeHere) rmSync(home, { recursive: true, force: true });
      if (scratch) rmSync(scratch.repo, { recursive: true, force: true });
    }
  });

  /** The hub's login page → "Sign in with hubauth" → hubauth's form, filled in as `user`. */
  async function signIn(page, user) {
    await page.goto(`${steps.hubUrl}/hub/login`);
    const button = page.locator('a[href*="oauth_login"]');
    await button.first().waitFor({ timeout: 15_000 });
    assert.match(await button.first().textContent(), /Sign in with hubauth/i, 'the hub offers "Sign in with hubauth"');
    await button.first().click();
    await page.waitForSelector('#username', { timeout: 15_000 });
    assert.equal(new URL(page.url()).origin, issuer, 'the login form is served by the broker of terminal 1');
    await page.fill('#username', user);
    await page.fill('#password', DEMO_USERS[user].password);
    await screenshot(page, `form-${user}`);
    const [answer] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).origin === issuer, { timeout: 30_000 }),
      page.locator('form[method="post" i] button[type="submit"], form[method="post" i] [type="submit"]').first().click(),
    ]);
    return answer;
  }

  it('ada signs in and reaches a running JupyterLab', async () => {
    const { page, close } = await loggedContext(browser, { prefix: PREFIX, label: 'ada' });
    try {
      await signIn(page, 'ada');
      // The hub spawns ada's server and sends her on to it; JupyterLab's first start takes a while.
      await page.waitForURL((u) => u.origin === steps.hubUrl && u.pathname.startsWith('/user/ada/lab'), { timeout: 180_000 })
        .catch(async (e) => { await screenshot(page, 'ada-not-in-lab'); throw new Error(`${e.message}; ${await where(page)}`); });
      // JupyterLab's own application shell, rendered by its JavaScript: the server is running.
      await page.waitForSelector('#jp-main-dock-panel', { timeout: 120_000 })
        .catch(async (e) => { await screenshot(page, 'ada-lab-not-rendered'); throw new Error(`${e.message}; ${await where(page)}`); });
      await screenshot(page, 'ada-jupyterlab');
      const api = await page.request.get(`${steps.hubUrl}/user/ada/api/status`);
      assert.equal(api.status(), 200, "ada's single-user server answers its API");
      assert.ok(typeof (await api.json()).started === 'string', 'the Jupyter server reports when it started');
    } finally {
      await close();
    }
  });

  it("olivia meets hubauth's refusal page with its reason code", async () => {
    const { page, close } = await loggedContext(browser, { prefix: PREFIX, label: 'olivia' });
    try {
      const answer = await signIn(page, 'olivia');
      await page.waitForLoadState('load');
      await screenshot(page, 'olivia-refused');
      assert.equal(answer.status(), 403, `hubauth refuses olivia with 403; ${await where(page)}`);
      assert.equal(new URL(page.url()).origin, issuer, 'the refusal is hubauth\'s page, not the hub\'s generic 403');
      assert.match(await page.content(), /<code>not_allowed<\/code>/, `the page names the reason code; ${await where(page)}`);
      const hubHome = await page.request.get(`${steps.hubUrl}/hub/api/user`);
      assert.notEqual(hubHome.status(), 200, 'olivia has no hub session');
    } finally {
      await close();
    }
  });

  it('the repository stays clean', async () => {
    const { stdout } = await run('git', ['status', '--porcelain', '--untracked-files=all'], { cwd: scratch.repo });
    const left = stdout.split('\n').filter((l) => l.trim() !== '');
    assert.deepEqual(left, [], 'the try-it steps leave no untracked or changed file in the repository');
    assert.ok(existsSync(path.join(HUB_DIR, 'jupyterhub.sqlite')), "the hub's own files went to /tmp/hubauth-hub");
  });
});
