// Helpers for e2e/replicas.test.mjs: a PostgreSQL server of the test's own (scripts/postgres.sh
// with its own data dir and port, so stopping it hurts no other test), a real HAProxy in front of
// several `hubauth serve` replicas, per-replica request counts from their logs, and a scripted
// browser whose every step can be sent to a chosen replica.
import { writeFileSync, statSync, openSync, readSync, closeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  REPO_ROOT, ARTIFACTS, run, startProcess, waitForHttp, browse, parseForm,
} from './harness.mjs';

const POSTGRES_SH = path.join(REPO_ROOT, 'scripts', 'postgres.sh');
export const HAPROXY_BIN = process.env.HAPROXY || '/usr/sbin/haproxy';

// ------------------------------------------------------------------ PostgreSQL

/**
 * Start (or reuse) the throw-away server of scripts/postgres.sh in `dir` on `port`.
 * Returns { url(db), ca, password, psql(db, sql), createDatabase(name), stop(), start() }.
 * Throws with the script's output when it cannot start.
 */
export async function startOwnPostgres({ dir, port }) {
  const env = { ...process.env, HUBAUTH_PG_DIR: dir, HUBAUTH_PG_PORT: String(port) };
  const sh = (args, opts = {}) => run('bash', [POSTGRES_SH, ...args], { env, timeout: 90_000, ...opts });
  const parse = (stdout) => {
    const out = {};
    for (const m of stdout.matchAll(/^export (\w+)='([^']*)'$|^export (\w+)=(\S*)$/gm)) {
      out[m[1] ?? m[3]] = m[2] ?? m[4];
    }
    return out;
  };
  const started = parse((await sh(['start'])).stdout);
  if (!started.HUBAUTH_TEST_POSTGRES_URL) throw new Error(`scripts/postgres.sh start printed no URL: ${JSON.stringify(started)}`);
  const base = new URL(started.HUBAUTH_TEST_POSTGRES_URL);
  const pg = {
    dir,
    port,
    ca: started.HUBAUTH_TEST_POSTGRES_CA,
    user: decodeURIComponent(base.username),
    password: decodeURIComponent(base.password),
    /** postgres://hubauth@127.0.0.1:PORT/db (no password: hubauth gets it from `[storage] password`). */
    url: (db) => `postgres://${base.username}@127.0.0.1:${port}/${db}`,
    /** With password and verified TLS, for `hubauth db copy --to`. */
    fullUrl: (db) => `postgres://${base.username}:${base.password}@127.0.0.1:${port}/${db}?sslmode=verify-full&sslrootcert=${encodeURIComponent(started.HUBAUTH_TEST_POSTGRES_CA)}`,
    /** Superuser SQL over the unix socket; rows as arrays of strings (psql -At, tab-separated). */
    async psql(db, sql) {
      const { stdout } = await sh(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-F', '\t', '-d', db, '-c', sql], { timeout: 30_000 });
      return stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
    },
    async createDatabase(name) {
      await pg.psql('postgres', `CREATE DATABASE "${name}" OWNER "${pg.user}"`);
      return name;
    },
    async stop() { await sh(['stop']); },
    async start() { await sh(['start']); },
  };
  return pg;
}

// ------------------------------------------------------------------ HAProxy

/**
 * A real HAProxy (Debian's) in the foreground (-db) as a child of this test: round-robin over
 * `servers` ([{ name, port }]), no stickiness, health checks `GET /healthz` every 500 ms (2 fails
 * mark a server DOWN), connection failures redispatched to another server, X-Forwarded-For added.
 * A stats page on `statsPort` (CSV) shows what HAProxy thinks of each server. `source`: the
 * address HAProxy connects to the servers from (so they can tell it from other local clients).
 */
export async function startHaproxy({ name, dir, port, statsPort, servers, source }) {
  const cfg = `# written by e2e/lib/replicas.mjs
global
    maxconn 4096
    log stderr format raw local0 notice

defaults
    mode http
    log global
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    # a refused connection (a killed replica) is retried on another server
    retries 3
    option redispatch 1

frontend hub
    bind 127.0.0.1:${port}
    option forwardfor
    default_backend hubauth

backend hubauth
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2${source ? ` source ${source}` : ''}
${servers.map((s) => `    server ${s.name} 127.0.0.1:${s.port} check`).join('\n')}

listen stats
    bind 127.0.0.1:${statsPort}
    stats enable
    stats uri /stats
    stats refresh 0
`;
  const file = path.join(dir, 'haproxy.cfg');
  writeFileSync(file, cfg);
  writeFileSync(path.join(ARTIFACTS, `${name}.cfg`), cfg);
  await run(HAPROXY_BIN, ['-c', '-f', file]);
  const proc = startProcess(HAPROXY_BIN, ['-db', '-f', file], { logName: name });
  const url = `http://127.0.0.1:${port}`;
  // Up before its servers may be: the stats page answers as soon as HAProxy listens.
  await waitForHttp(`http://127.0.0.1:${statsPort}/stats`, { proc, timeoutMs: 20_000, what: 'haproxy' });
  return {
    url,
    proc,
    stop: () => proc.stop(),
    /** { serverName: 'UP' | 'DOWN' | 'UP 1/2' … } from the stats CSV. */
    async serverStatus() {
      const res = await fetch(`http://127.0.0.1:${statsPort}/stats;csv`, { signal: AbortSignal.timeout(5000) });
      const [header, ...rows] = (await res.text()).split('\n').filter(Boolean);
      const cols = header.replace(/^# /, '').split(',');
      const out = {};
      for (const r of rows) {
        const v = r.split(',');
        const row = Object.fromEntries(cols.map((c, i) => [c, v[i]]));
        if (row.pxname === 'hubauth' && !['FRONTEND', 'BACKEND'].includes(row.svname)) out[row.svname] = row.status;
      }
      return out;
    },
  };
}

// ------------------------------------------------------------------ replica logs

/** Bytes in a log file now (so later counts can look at what came after). */
export function logMark(file) {
  try { return statSync(file).size; } catch { return 0; }
}

/** The log from byte `from` on. */
export function logSince(file, from = 0) {
  const fd = openSync(file, 'r');
  try {
    const size = statSync(file).size;
    const buf = Buffer.alloc(Math.max(0, size - from));
    readSync(fd, buf, 0, buf.length, from);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * Requests a replica answered (tower_http's "finished processing request" at debug level), by
 * "METHOD /path", health checks left out.
 */
export function requestsServed(text) {
  const out = {};
  for (const m of text.matchAll(/http\{method=(\w+) path=([^\s}]+)\}[^\n]*finished processing request/g)) {
    if (m[2] === '/healthz') continue;
    const k = `${m[1]} ${m[2]}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

export const total = (counts) => Object.values(counts).reduce((a, b) => a + b, 0);

// ------------------------------------------------------------------ polling

export async function eventually(fn, { timeoutMs = 30_000, intervalMs = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try { last = await fn(); } catch (e) { last = `threw: ${e.message}`; }
    if (last && !(typeof last === 'string' && last.startsWith('threw: '))) return last;
    await sleep(intervalMs);
  }
  throw new Error(`${what}: not true after ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
}

// ------------------------------------------------------------------ OAuth code flow, step by step

export const s256 = (v) => createHash('sha256').update(v).digest('base64url');
export const basicAuth = (id, secret) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

/** `url` (absolute, on the issuer) sent to `origin` instead: same path and query. */
export const at = (origin, url) => new URL(`${url.pathname}${url.search}`, origin);

export function jwtHeader(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString());
}

/**
 * A confidential client's authorization code flow with the dev connector's password form, each
 * HTTP step sent to `route(step)` (an origin: a replica, or the load balancer):
 *   0 GET /authorize → 1 GET /login → 2 POST the form → 3 POST /token.
 * Returns { tokens, stage } where stage counts the steps that succeeded (4 = tokens in hand);
 * throws nothing: a failure is { error, stage }.
 */
export async function passwordCodeFlow({
  jar, route, issuer, client, user, password, scope = 'openid profile groups offline_access', connector = 'dev', timeoutMs = 20_000,
}) {
  let stage = 0;
  const signal = () => AbortSignal.timeout(timeoutMs);
  try {
    const verifier = randomBytes(32).toString('base64url');
    const state = randomBytes(12).toString('hex');
    const nonce = randomBytes(12).toString('hex');
    const authorize = new URL('/authorize', issuer);
    authorize.search = new URLSearchParams({
      response_type: 'code', client_id: client.id, redirect_uri: client.redirectUri, scope, state, nonce,
      code_challenge: s256(verifier), code_challenge_method: 'S256', connector,
    });
    const a = await browse(jar, at(route(0), authorize), { signal: signal() });
    if (![302, 303].includes(a.status) || !a.location) throw new Error(`/authorize answered ${a.status}: ${a.text.slice(0, 300)}`);
    stage = 1;
    const page = await browse(jar, at(route(1), a.location), { signal: signal() });
    if (page.status !== 200) throw new Error(`GET ${a.location.pathname} answered ${page.status}: ${page.text.slice(0, 300)}`);
    const form = parseForm(page.text, a.location);
    if (!form) throw new Error(`no form on ${a.location.pathname}: ${page.text.slice(0, 300)}`);
    stage = 2;
    const post = await browse(jar, at(route(2), form.action), { method: 'POST', form: { ...form.inputs, username: user, password }, signal: signal() });
    if (![302, 303].includes(post.status) || !post.location) throw new Error(`login POST answered ${post.status}: ${post.text.slice(0, 300)}`);
    if (!post.location.href.startsWith(client.redirectUri)) throw new Error(`login POST went to ${post.location.origin}${post.location.pathname}, not the client`);
    const back = post.location.searchParams;
    if (back.get('state') !== state) throw new Error('state mismatch');
    if (back.get('iss') !== issuer) throw new Error(`iss ${back.get('iss')} is not ${issuer}`);
    const code = back.get('code');
    if (!code) throw new Error(`no code: ${post.location.search}`);
    stage = 3;
    const tok = await tokenRequest(route(3), client, {
      grant_type: 'authorization_code', code, redirect_uri: client.redirectUri, code_verifier: verifier,
    }, { timeoutMs });
    if (tok.status !== 200) throw new Error(`code exchange answered ${tok.status}: ${tok.text}`);
    stage = 4;
    return { tokens: tok.json, stage, nonce };
  } catch (error) {
    return { error, stage };
  }
}

/** POST /token at `origin` with client_secret_basic: { status, json, text }. */
export async function tokenRequest(origin, client, form, { timeoutMs = 20_000 } = {}) {
  const res = await fetch(new URL('/token', origin), {
    method: 'POST',
    headers: { authorization: basicAuth(client.id, client.secret), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return answer(res);
}

/** A response as { status, json (undefined unless JSON), text, headers }. */
async function answer(res) {
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text, headers: res.headers };
}

export async function userinfo(origin, accessToken) {
  const res = await fetch(new URL('/userinfo', origin), {
    headers: { authorization: `Bearer ${accessToken}` }, signal: AbortSignal.timeout(15_000),
  });
  return answer(res);
}
