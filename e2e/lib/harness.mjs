// Shared helpers for the hubauth end-to-end tests.
//
// - startHubauth(): runs `hubauth demo` on a free loopback port with a fresh --data-dir
// - startProcess(): spawns a child in its own process group, logs to e2e/artifacts/,
//   and guarantees it is killed (test hooks + process exit handler)
// - CookieJar / browse(): a tiny "browser" on top of fetch (redirect: 'manual')
// - parseForm(): extract a <form> and its inputs from HTML
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, createWriteStream, readFileSync, existsSync, rmSync } from 'node:fs';
import { randomBytes, createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = path.resolve(E2E_DIR, '..');
export const ARTIFACTS = path.join(E2E_DIR, 'artifacts');
mkdirSync(ARTIFACTS, { recursive: true });

export const HUBAUTH_BIN = path.resolve(
  REPO_ROOT,
  process.env.HUBAUTH_BIN || 'target/debug/hubauth',
);

export const DEMO_USERS = {
  ada: { password: 'ada-demo', groups: ['admins'], name: 'Ada Lovelace', email: 'ada@example.org' },
  sam: { password: 'sam-demo', groups: ['students'], name: 'Sam Student' },
  olivia: { password: 'olivia-demo', groups: [] },
};

// ------------------------------------------------------------------ processes

const children = new Set();
const pidFiles = new Set();

/** Also kill (SIGKILL) the pid written in `file` at cleanup (for daemons in their own session). */
export function registerPidFile(file) { pidFiles.add(file); }

export function killPidFile(file, signal = 'SIGKILL') {
  pidFiles.delete(file);
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    if (pid > 1) process.kill(pid, signal);
  } catch { /* no file or no process */ }
}

function killGroup(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal); // whole process group (spawned detached)
  } catch {
    try { child.kill(signal); } catch { /* already gone */ }
  }
}

// Last-resort cleanup: whatever happens to this test process, leave nothing behind.
process.on('exit', () => {
  for (const c of children) killGroup(c, 'SIGKILL');
  for (const f of pidFiles) killPidFile(f);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    for (const c of children) killGroup(c, 'SIGKILL');
    for (const f of pidFiles) killPidFile(f);
    process.exit(130);
  });
}

/**
 * Spawn a long-running process in its own process group, logging stdout+stderr to
 * e2e/artifacts/<logName>.log. Returns { child, logFile, stop(), exited }.
 */
export function startProcess(cmd, args, { logName, env, cwd } = {}) {
  const logFile = path.join(ARTIFACTS, `${logName}.log`);
  const log = createWriteStream(logFile, { flags: 'w' });
  log.write(`$ ${cmd} ${args.join(' ')}\n`);
  const child = spawn(cmd, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.add(child);
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  let output = '';
  const collect = (d) => { if (output.length < 200_000) output += d.toString(); };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      log.write(`\n[exited code=${code} signal=${signal}]\n`);
      resolve({ code, signal });
    });
    child.on('error', (err) => {
      children.delete(child);
      log.write(`\n[spawn error: ${err.message}]\n`);
      resolve({ code: -1, signal: null, error: err });
    });
  });
  async function stop() {
    if (child.exitCode === null && child.signalCode === null) {
      killGroup(child, 'SIGTERM');
      const t = await Promise.race([exited.then(() => 'exited'), sleep(5000).then(() => 'timeout')]);
      if (t === 'timeout') {
        killGroup(child, 'SIGKILL');
        await Promise.race([exited, sleep(2000)]);
      }
    }
    // the group may still hold grandchildren (e.g. a proxy) even after the leader exited
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* none left */ }
    await new Promise((r) => log.end(r));
  }
  return { child, logFile, stop, exited, output: () => output };
}

export function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 10 * 1024 * 1024, timeout: 60_000, ...opts }, (err, stdout, stderr) => {
      if (err) {
        err.message += `\nstdout: ${stdout}\nstderr: ${stderr}`;
        reject(err);
      } else resolve({ stdout, stderr });
    });
  });
}

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Poll `url` until it answers `status` (default 200). Fails early if `proc` exits. */
export async function waitForHttp(url, { status = 200, timeoutMs = 60_000, proc, what = url } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  let procExit = null;
  proc?.exited.then((e) => { procExit = e; });
  while (Date.now() < deadline) {
    if (procExit) {
      throw new Error(`${what}: process exited (${JSON.stringify(procExit)}) before ready; log ${proc.logFile}:\n${proc.output().slice(-4000)}`);
    }
    try {
      const r = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(2000) });
      await r.arrayBuffer();
      if (r.status === status) return;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = e.cause?.code || e.message;
    }
    await sleep(150);
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms (last: ${last})${proc ? `; log ${proc.logFile}:\n${proc.output().slice(-4000)}` : ''}`);
}

export function tempDir(prefix) {
  return mkdtempSync(path.join(tmpdir(), `hubauth-e2e-${prefix}-`));
}

/**
 * Start `hubauth demo` on a free loopback port with a fresh data dir.
 * Returns { issuer, port, dataDir, secret, configPath, proc, stop() }.
 */
export async function startHubauth({ name = 'hubauth', hubUrl, extraArgs = [] } = {}) {
  if (!existsSync(HUBAUTH_BIN)) {
    throw new Error(`hubauth binary not found at ${HUBAUTH_BIN} (build it with \`cargo build --bin hubauth\` or set HUBAUTH_BIN)`);
  }
  const port = await freePort();
  const dataDir = tempDir('data');
  const args = ['demo', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir];
  if (hubUrl) args.push('--hub-url', hubUrl);
  args.push(...extraArgs);
  const proc = startProcess(HUBAUTH_BIN, args, { logName: name, env: { RUST_LOG: process.env.RUST_LOG || 'info', RUST_BACKTRACE: '1', NO_COLOR: '1' } });
  const issuer = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${issuer}/.well-known/openid-configuration`, { proc, timeoutMs: 30_000, what: 'hubauth demo' });
  } catch (e) {
    await proc.stop();
    throw e;
  }
  const secretFile = path.join(dataDir, 'jupyterhub-client-secret');
  const secret = readFileSync(secretFile, 'utf8').trim();
  return {
    issuer,
    port,
    dataDir,
    secret,
    configPath: path.join(dataDir, 'hubauth.toml'),
    proc,
    async stop() {
      await proc.stop();
      if (!process.env.E2E_KEEP_TMP) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// ------------------------------------------------------------------ tiny browser

/** Cookie jar for one host (cookies are not port-specific, RFC 6265 §8.5). */
export class CookieJar {
  constructor() { this.cookies = new Map(); this.raw = []; }
  store(response) {
    const list = typeof response.headers.getSetCookie === 'function' ? response.headers.getSetCookie() : [];
    for (const sc of list) {
      this.raw.push(sc);
      const [pair, ...attrs] = sc.split(';');
      const eq = pair.indexOf('=');
      if (eq < 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let expired = false;
      for (const a of attrs) {
        const [k, v = ''] = a.split('=');
        const key = k.trim().toLowerCase();
        if (key === 'max-age' && Number(v.trim()) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v.trim()) < Date.now()) expired = true;
      }
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  clone() {
    const j = new CookieJar();
    j.cookies = new Map(this.cookies);
    return j;
  }
}

/** fetch with redirect:'manual', sending and storing cookies in `jar`. */
export async function browse(jar, url, { method = 'GET', form, headers = {}, body, signal } = {}) {
  const h = { ...headers };
  const c = jar?.header();
  if (c) h.cookie = c;
  if (form) {
    h['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  const res = await fetch(url, { method, headers: h, body, redirect: 'manual', signal });
  jar?.store(res);
  const text = await res.text();
  const loc = res.headers.get('location');
  return {
    status: res.status,
    headers: res.headers,
    text,
    location: loc ? new URL(loc, url) : null,
    rawLocation: loc,
    url: String(url),
  };
}

function decodeEntities(s) {
  return s
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number(d)))
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function attrs(tag) {
  const out = {};
  const re = /([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  // skip the tag name
  const inner = tag.replace(/^<\s*[a-zA-Z0-9]+/, '').replace(/\/?>$/, '');
  let m;
  while ((m = re.exec(inner))) {
    out[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

/** Parse the first <form> (optionally with method=post) in `html`. */
export function parseForm(html, baseUrl) {
  const fm = html.match(/<form\b[^>]*>([\s\S]*?)<\/form>/i);
  if (!fm) return null;
  const formTag = fm[0].match(/<form\b[^>]*>/i)[0];
  const fa = attrs(formTag);
  const inputs = {};
  const inputTags = [];
  for (const m of fm[1].matchAll(/<input\b[^>]*>/gi)) {
    const a = attrs(m[0]);
    inputTags.push(a);
    if (a.name !== undefined) inputs[a.name] = a.value ?? '';
  }
  const buttons = [...fm[1].matchAll(/<button\b[^>]*>/gi)].map((m) => attrs(m[0]));
  const action = fa.action !== undefined && fa.action !== '' ? new URL(fa.action, baseUrl) : new URL(baseUrl);
  return { method: (fa.method || 'get').toLowerCase(), action, inputs, inputTags, buttons, attrs: fa };
}

/**
 * Drive the hubauth login for an /authorize URL like a browser would.
 * Returns the final redirect (to the client's redirect_uri) as a URL, plus the pages seen.
 */
export async function loginViaForm(jar, authorizeUrl, username, password) {
  const a = await browse(jar, authorizeUrl);
  if (a.status !== 303 && a.status !== 302) {
    throw new Error(`/authorize answered ${a.status} (expected 303 to /login): ${a.text.slice(0, 500)}`);
  }
  if (a.location.pathname !== '/login') {
    // SSO: already at the redirect_uri
    return { redirect: a.location, authorize: a, sso: true };
  }
  const page = await browse(jar, a.location);
  if (page.status !== 200) throw new Error(`GET ${a.location} answered ${page.status}: ${page.text.slice(0, 500)}`);
  const form = parseForm(page.text, a.location);
  if (!form) throw new Error(`no <form> on login page:\n${page.text.slice(0, 2000)}`);
  const post = await browse(jar, form.action, {
    method: 'POST',
    form: { ...form.inputs, username, password },
  });
  if (post.status !== 303 && post.status !== 302) {
    throw new Error(`login POST answered ${post.status} (expected 303): ${post.text.slice(0, 800)}`);
  }
  return { redirect: post.location, authorize: a, loginPage: page, form, post, sso: false };
}

/**
 * Signs `username` in through hubauth's login form as client `clientId` (authorization code
 * with PKCE, client_secret_post) and redeems the code; the token response's JSON.
 */
export async function signInAndRedeem({ base, clientId, clientSecret, redirectUri, username, password }) {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const url = new URL(`${base}/authorize`);
  for (const [k, v] of Object.entries({
    response_type: 'code', client_id: clientId, redirect_uri: redirectUri, scope: 'openid profile groups',
    state: randomBytes(8).toString('hex'), code_challenge: challenge, code_challenge_method: 'S256',
  })) url.searchParams.set(k, v);
  const { redirect } = await loginViaForm(new CookieJar(), url, username, password);
  const code = redirect.searchParams.get('code');
  if (!code) throw new Error(`no code at the redirect: ${redirect}`);
  const r = await fetch(`${base}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier,
      client_id: clientId, client_secret: clientSecret,
    }),
    signal: AbortSignal.timeout(10_000),
  });
  if (r.status !== 200) throw new Error(`the code exchange answered ${r.status}: ${await r.text()}`);
  return r.json();
}

export function artifactPath(name) {
  return path.join(ARTIFACTS, name);
}
