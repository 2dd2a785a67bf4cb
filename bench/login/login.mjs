// Full-login latency through each redirect connector, against fake upstreams that add a fixed
// round-trip time to every request hubauth makes (bench/login/fakes.mjs). Started by run.sh; see
// bench/README.md ("bench/login/").
//
// For every connector: LOGINS sequential logins (after one cold login), each in a fresh cookie
// jar, driven like a browser: GET /authorize?…&connector=ID → 303 /login → 303 provider →
// (the fake approves at once) 302 /callback/ID?code&state → 303 to the client with a code.
// Measured: wall time from the first /authorize request to the code in hand; which upstream
// requests hubauth made, how many overlapped, and the longest chain of requests that had to wait
// for one another (sequential round trips). Writes RESULTS.md and work/logins.jsonl.
//
// Environment: HUBAUTH_BIN (required), LOGINS=30, RTT_MS=50,
// CONNECTORS=oidc,oauth2,google,github,canvas,github-orgs,canvas-states,
// WORK=bench/login/work, OUT=bench/login/RESULTS.md, HUBAUTH_REV, HUBAUTH_BUILD (a label).

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import { browse, freePort, pct } from './util.mjs';
import { recorder, startOidc, startGithub, startCanvas, GITHUB_USER, CANVAS_USER } from './fakes.mjs';

const GITHUB_OWNER_TOKEN = 'ghp_benchOrgOwner000000000000000000000';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const HUBAUTH = process.env.HUBAUTH_BIN;
const LOGINS = Number(process.env.LOGINS || 30);
const RTT = Number(process.env.RTT_MS || 50);
const WANTED = (process.env.CONNECTORS || 'oidc,oauth2,google,github,canvas,github-orgs,canvas-states').split(',').map((s) => s.trim()).filter(Boolean);
const WORK = path.resolve(process.env.WORK || path.join(HERE, 'work'));
const OUT = path.resolve(process.env.OUT || path.join(HERE, 'RESULTS.md'));
if (!HUBAUTH) {
  console.error('HUBAUTH_BIN is not set (run bench/login/run.sh)');
  process.exit(2);
}
fs.mkdirSync(WORK, { recursive: true });

const log = (...a) => console.error(...a);
const now = () => performance.now();
const CLIENT = { id: 'bench-login', secret: 'bench-login-secret-0123456789', redirect: 'http://127.0.0.1:9/cb' };
const UPSTREAM_SECRET = 'upstream-secret-0123456789';

// ------------------------------------------------------------------ machine load

function cpuTimes() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return { idle: f[3] + f[4], total: f.reduce((a, b) => a + b, 0) };
}
async function busyPct() {
  const a = cpuTimes();
  await sleep(1000);
  const b = cpuTimes();
  const total = b.total - a.total;
  return total > 0 ? Math.round((100 * (total - (b.idle - a.idle))) / total) : 0;
}
const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

// ------------------------------------------------------------------ fakes and connectors


const toml = (v) => (Array.isArray(v) ? `[${v.map(toml).join(', ')}]` : JSON.stringify(v));
function tomlTable(header, obj) {
  const lines = [header];
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) lines.push(`${k} = ${toml(v)}`);
  return lines.join('\n');
}

/**
 * Each connector: its config, and the least upstream work its data needs (warm: discovery and
 * JWKS cached), with the reason, for the notes under the table.
 */
async function setUp(servers) {
  const oidcClients = new Map([
    ['hubauth-oidc', { secret: UPSTREAM_SECRET, auth: 'basic' }],
    ['hubauth-oauth2', {
      secret: UPSTREAM_SECRET,
      auth: 'basic',
      // Another account: one hubauth username cannot come from two connectors.
      user: {
        sub: 'a7d3c2b1-0e9f-4d8c-b7a6-bench0000002',
        idTokenClaims: {},
        userinfoClaims: { preferred_username: 'otto', name: 'Otto OAuth', email: 'otto@bench-uni.example', groups: ['chemistry', 'hub-users'] },
      },
    }],
  ]);
  const oidc = await startOidc({
    group: 'oidc',
    rttMs: RTT,
    clients: oidcClients,
    user: {
      sub: 'f2c1e7d0-5b1a-4c1e-9d55-bench0000001',
      idTokenClaims: { preferred_username: 'olga', name: 'Olga Oidc', email: 'olga@bench-uni.example', email_verified: true },
      userinfoClaims: {
        preferred_username: 'olga',
        name: 'Olga Oidc',
        email: 'olga@bench-uni.example',
        email_verified: true,
        groups: ['physics', 'students-2025', 'hub-users'],
      },
    },
  });
  servers.push(oidc.server);
  const google = await startOidc({
    group: 'google',
    rttMs: RTT,
    paths: 'google',
    clients: new Map([['hubauth-bench.apps.googleusercontent.com', { secret: UPSTREAM_SECRET, auth: 'post' }]]),
    user: {
      sub: '109876543210987654321',
      idTokenClaims: { email: 'gina@bench-uni.example', email_verified: true, hd: 'bench-uni.example', name: 'Gina Google' },
      userinfoClaims: { email: 'gina@bench-uni.example', email_verified: true, hd: 'bench-uni.example', name: 'Gina Google' },
    },
  });
  servers.push(google.server);
  const github = await startGithub({ group: 'github', rttMs: RTT, clientId: 'Iv1.bench0000000001', clientSecret: UPSTREAM_SECRET });
  servers.push(...github.servers);
  const canvas = await startCanvas({ group: 'canvas', rttMs: RTT, clientId: '10000000000042', clientSecret: UPSTREAM_SECRET });
  servers.push(canvas.server);
  // Variants (another account each: one hubauth username cannot come from two connectors).
  // github-orgs: `organizations` + `organization_credential`; the person is active in bench-uni,
  // invited (pending) to bench-lab, which has 140 more pending invitations, and neither in nor
  // invited to bench-club (12 invitations to others).
  const ORGS_USER = {
    login: 'octo-newcomer',
    id: 5832399,
    name: 'Octo Newcomer',
    orgs: { 'bench-uni': 'active', 'bench-lab': 'pending' },
    teams: [['bench-uni', 'students-2025'], ['bench-uni', 'physics']],
  };
  const ORGS_INVITATIONS = {
    'bench-lab': { others: 140, mine: ['researchers', 'gpu-users'] },
    'bench-club': { others: 12, mine: null },
  };
  const githubOrgs = await startGithub({
    group: 'github-orgs', rttMs: RTT, clientId: 'Iv1.bench0000000002', clientSecret: UPSTREAM_SECRET,
    user: ORGS_USER, invitations: ORGS_INVITATIONS, ownerToken: GITHUB_OWNER_TOKEN,
  });
  servers.push(...githubOrgs.servers);
  // canvas-states: enrollment_state = active, invited_or_pending, completed.
  const STATES_USER = { id: 4343, name: 'Cleo Canvas', login: 'ccleo', courses: { active: 120, invited: 3, completed: 40 }, groups: 4 };
  const canvasStates = await startCanvas({
    group: 'canvas-states', rttMs: RTT, clientId: '10000000000043', clientSecret: UPSTREAM_SECRET, user: STATES_USER,
  });
  servers.push(canvasStates.server);
  const nCourses = (u) => Object.values(u.courses).reduce((a, b) => a + b, 0);

  return [
    {
      id: 'oidc',
      label: 'oidc (Keycloak-style)',
      config: {
        type: 'oidc', id: 'oidc', name: 'Bench OIDC', issuer: oidc.issuer, client_id: 'hubauth-oidc',
        client_secret: UPSTREAM_SECRET, scope: ['openid', 'profile', 'email'], groups_claim: 'groups',
        token_endpoint_auth: 'client_secret_basic',
      },
      minimum: {
        requests: 2, sequential: 2,
        why: 'token, then userinfo (it needs the access token); discovery and JWKS are cached after the first login',
      },
    },
    {
      id: 'oauth2',
      label: 'oauth2 (same server, generic)',
      config: {
        type: 'oauth2', id: 'oauth2', name: 'Bench OAuth2', client_id: 'hubauth-oauth2', client_secret: UPSTREAM_SECRET,
        authorize_url: oidc.authorizeUrl, token_url: oidc.tokenUrl, userdata_url: oidc.userinfoUrl,
        scope: ['profile', 'email'], username_claim: 'preferred_username', groups_claim: 'groups',
      },
      minimum: { requests: 2, sequential: 2, why: 'token, then the user-data URL with the access token' },
    },
    {
      id: 'google',
      label: 'google (issuer → fake)',
      config: {
        type: 'google', id: 'google', name: 'Bench Google', client_id: 'hubauth-bench.apps.googleusercontent.com',
        client_secret: UPSTREAM_SECRET, hosted_domain: ['bench-uni.example'], issuer: google.issuer,
      },
      minimum: { requests: 1, sequential: 1, why: 'token only: the verified ID token carries email, email_verified and hd' },
    },
    {
      id: 'github',
      label: `github (${Object.keys(GITHUB_USER.orgs).length} orgs, ${GITHUB_USER.teams.length} teams)`,
      config: {
        type: 'github', id: 'github', name: 'Bench GitHub', client_id: 'Iv1.bench0000000001', client_secret: UPSTREAM_SECRET,
        github_url: github.webUrl, api_url: github.apiUrl,
      },
      minimum: {
        requests: 5, sequential: 2,
        why: 'token, then /user, /user/emails (the address is private), /user/memberships/orgs and /user/teams together, one page each',
      },
    },
    {
      id: 'canvas',
      label: `canvas (${nCourses(CANVAS_USER)} courses, ${CANVAS_USER.groups} groups)`,
      config: {
        type: 'canvas', id: 'canvas', name: 'Bench Canvas', client_id: '10000000000042', client_secret: UPSTREAM_SECRET,
        canvas_url: canvas.url,
      },
      minimum: {
        requests: 5, sequential: 3,
        why: `token, then profile, courses page 1 and groups together, then courses page 2 (${nCourses(CANVAS_USER)} courses at per_page=100; the next page is known only from page 1's Link header)`,
      },
    },
    {
      id: 'github-orgs',
      label: 'github + `organizations` (invited to 1 of 3 listed orgs)',
      config: {
        type: 'github', id: 'github-orgs', name: 'Bench GitHub (orgs)', client_id: 'Iv1.bench0000000002', client_secret: UPSTREAM_SECRET,
        github_url: githubOrgs.webUrl, api_url: githubOrgs.apiUrl,
        organizations: ['bench-uni', 'bench-lab', 'bench-club'], organization_credential: GITHUB_OWNER_TOKEN,
      },
      minimum: {
        requests: 9, sequential: 5,
        why: 'token; /user, /user/emails, /user/memberships/orgs, /user/teams together; then the invitations of bench-lab (pending) and bench-club (not a member) together, page 1 each; then bench-lab\'s page 2 (141 invitations); then the teams of the invitation found (bench-uni is skipped: active member)',
        hint: 'Where: `GithubConnector::pending_invitations` (src/connectors/github.rs) looks the listed organizations up one after another (`for org in &self.organizations`, awaiting each list and the invitation\'s teams); the lookups of different organizations are independent and could run together',
      },
    },
    {
      id: 'canvas-states',
      label: `canvas, 3 \`enrollment_state\`s (${STATES_USER.courses.active} + ${STATES_USER.courses.invited} + ${STATES_USER.courses.completed} courses)`,
      config: {
        type: 'canvas', id: 'canvas-states', name: 'Bench Canvas (states)', client_id: '10000000000043', client_secret: UPSTREAM_SECRET,
        canvas_url: canvasStates.url, enrollment_state: ['active', 'invited_or_pending', 'completed'],
      },
      minimum: {
        requests: 7, sequential: 3,
        why: 'token; then profile, groups and page 1 of each of the three course lists together; then page 2 of the active list',
        hint: 'Where: `CanvasConnector::courses` (src/connectors/canvas.rs) reads the course list of each `enrollment_state` one after the other (`for state in &self.enrollment_states`); the lists are independent and could be read together',
      },
    },
  ].filter((c) => WANTED.includes(c.id));
}

function hubConfig(port, connectors) {
  const parts = [
    `issuer = "http://127.0.0.1:${port}"`,
    `listen = "127.0.0.1:${port}"`,
    '',
    tomlTable('[storage]', { url: `sqlite://${path.join(WORK, 'hubauth.db')}` }),
    '',
    tomlTable('[[clients]]', { id: CLIENT.id, secret: CLIENT.secret, redirect_uris: [CLIENT.redirect] }),
  ];
  for (const c of connectors) parts.push('', tomlTable('[[connectors]]', c.config));
  return parts.join('\n') + '\n';
}

// ------------------------------------------------------------------ the browser

const get = (jar, url, { toProvider = false } = {}) => browse(jar, url, { atProvider: toProvider });

function expectRedirect(step, r, statuses) {
  if (!statuses.includes(r.status) || !r.location) {
    const text = r.body.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 400);
    throw new Error(`${step}: expected ${statuses.join('/')} with Location, got ${r.status}: ${text}`);
  }
  return r.location;
}

async function login(hub, connector) {
  const jar = new Map();
  const verifier = crypto.randomBytes(32).toString('base64url');
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT.id,
    redirect_uri: CLIENT.redirect,
    scope: 'openid profile email groups',
    state: crypto.randomBytes(16).toString('base64url'),
    nonce: crypto.randomBytes(16).toString('base64url'),
    code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    connector: connector.id,
  });
  recorder.reset();
  const t = { start: now() };
  recorder.phase = 'authorize';
  const toLogin = expectRedirect('/authorize', await get(jar, `${hub}/authorize?${q}`), [302, 303]);
  t.authorize = now();
  recorder.phase = 'login';
  const toProvider = expectRedirect('/login', await get(jar, toLogin), [302, 303]);
  t.login = now();
  recorder.phase = 'provider';
  const toCallback = expectRedirect('provider authorize', await get(jar, toProvider, { toProvider: true }), [302]);
  t.provider = now();
  recorder.phase = 'callback';
  const toClient = expectRedirect(`/callback/${connector.id}`, await get(jar, toCallback), [302, 303]);
  t.callback = now();
  recorder.phase = 'idle';
  const back = new URL(toClient);
  if (!toClient.startsWith(CLIENT.redirect) || !back.searchParams.get('code') || back.searchParams.get('state') !== q.get('state')) {
    throw new Error(`/callback/${connector.id}: sent the browser to ${back.origin}${back.pathname} without a code for this request`);
  }
  const requests = recorder.requests.map((r) => ({ ...r, start: r.start - t.start, end: r.end - t.start }));
  return {
    connector: connector.id,
    ms: t.callback - t.start,
    phases: {
      authorize: t.authorize - t.start,
      login: t.login - t.authorize,
      provider: t.provider - t.login,
      callback: t.callback - t.provider,
    },
    requests,
    sequential: longestChain(requests),
    maxInFlight: maxOverlap(requests),
    newConnections: requests.filter((r) => r.newConnection).length,
  };
}

/** The longest chain of requests each of which started only after the previous one's answer. */
function longestChain(reqs) {
  const s = [...reqs].sort((a, b) => a.start - b.start);
  const depth = [];
  let best = 0;
  for (let i = 0; i < s.length; i++) {
    let d = 1;
    for (let j = 0; j < i; j++) if (s[j].end <= s[i].start) d = Math.max(d, depth[j] + 1);
    depth.push(d);
    best = Math.max(best, d);
  }
  return best;
}

function maxOverlap(reqs) {
  const ev = [];
  for (const r of reqs) ev.push([r.start, 1], [r.end, -1]);
  ev.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let n = 0;
  let best = 0;
  for (const [, d] of ev) best = Math.max(best, (n += d));
  return best;
}

// ------------------------------------------------------------------ statistics and report

const mode = (xs) => {
  const m = new Map();
  for (const x of xs) m.set(x, (m.get(x) || 0) + 1);
  return [...m].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0];
};
const span = (xs) => {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? String(lo) : `${lo}–${hi}`;
};
const fmt = (x) => (Math.abs(x) < 0.05 ? '0.0' : Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(1));

const LIST_PATHS = [
  /^\/user\/(emails|orgs|teams|memberships\/orgs)$/,
  /^\/api\/v1\/(courses|users\/self\/(groups|courses|enrollments))$/,
  /^\/orgs\/[^/]+\/invitations(\/\d+\/teams)?$/,
];
const isList = (r) => LIST_PATHS.some((re) => re.test(r.path));

function describeRequest(r) {
  const q = new URLSearchParams(r.query);
  const shown = [...q].filter(([k]) => k !== 'access_token').map(([k, v]) => `${k}=${v}`).join('&');
  return `${r.method} ${r.path}${shown ? `?${shown}` : ''}`;
}

function trace(run) {
  const lines = [];
  for (const r of [...run.requests].sort((a, b) => a.start - b.start)) {
    lines.push(
      `  +${r.start.toFixed(0).padStart(4)} → +${r.end.toFixed(0).padStart(4)} ms  ${r.phase.padEnd(8)} ${r.newConnection ? 'new conn ' : '         '} ${r.status}  ${describeRequest(r)}`,
    );
  }
  return lines.join('\n');
}

function notesFor(c, warm, cold) {
  const req = mode(warm.map((w) => w.requests.length));
  const seq = mode(warm.map((w) => w.sequential));
  const inflight = mode(warm.map((w) => w.maxInFlight));
  const sample = warm.find((w) => w.requests.length === req && w.sequential === seq) || warm[0];
  const lists = sample.requests.filter(isList);
  const perPage = [...new Set(lists.map((r) => `${r.path} per_page=${new URLSearchParams(r.query).get('per_page') ?? '(default)'}`))];
  const small = lists.filter((r) => Number(new URLSearchParams(r.query).get('per_page') || 0) < 100);
  const m = c.minimum;
  const verdict = req === m.requests && seq === m.sequential
    ? `**minimal**: ${req} request(s) in ${seq} sequential round trip(s), the least this data needs (${m.why})`
    : `**not minimal**: ${req} request(s) in ${seq} sequential round trip(s) where ${m.requests} in ${m.sequential} would do (${m.why}); the excess costs about ${(seq - m.sequential) * RTT} ms per login at ${RTT} ms RTT${m.hint ? `. ${m.hint}` : ''}`;
  let s = `- **${c.id}**: ${verdict}. Max ${inflight} upstream request(s) in flight at once.`;
  if (lists.length) {
    s += ` Lists read: ${perPage.join(', ')}`;
    s += small.length ? ` — **${small.length} list request(s) without per_page=100**.` : ' (largest page size).';
  }
  const conns = span(warm.map((w) => w.newConnections));
  s += ` New TCP connections: ${conns} per warm login (hubauth's keep-alive pool is reused), ${cold.newConnections} on the cold login.`;
  const coldExtra = cold.requests.length - req;
  if (coldExtra > 0) {
    const extra = cold.requests.filter((r) => !sample.requests.some((w) => w.path === r.path && w.method === r.method));
    s += ` Cold (first) login: ${cold.requests.length} requests, ${cold.sequential} sequential (${extra.map(describeRequest).join(', ') || 'repeats'} in addition).`;
  }
  return s;
}

function buildReport(connectors, results, skipped, meta) {
  const rows = [];
  const notes = [];
  const traces = [];
  const header = '| connector | upstream requests/login | sequential round trips | max in flight | p50 ms | p95 ms | max ms | floor ms (rtt × sequential) | p50 − floor ms | cold login ms (requests) |';
  rows.push(header, '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of connectors) {
    const runs = results.get(c.id);
    if (!runs || runs.length < 2) continue;
    const [cold, ...warm] = runs;
    const ms = warm.map((w) => w.ms);
    const seq = mode(warm.map((w) => w.sequential));
    const floor = seq * RTT;
    const p50 = pct(ms, 50);
    rows.push(`| ${c.label} | ${span(warm.map((w) => w.requests.length))} | ${span(warm.map((w) => w.sequential))} | ${span(warm.map((w) => w.maxInFlight))} | ${fmt(p50)} | ${fmt(pct(ms, 95))} | ${fmt(Math.max(...ms))} | ${floor} | ${fmt(p50 - floor)} | ${fmt(cold.ms)} (${cold.requests.length}) |`);
    notes.push(notesFor(c, warm, cold));
    const median = [...warm].sort((a, b) => a.ms - b.ms)[Math.floor(warm.length / 2)];
    traces.push(`${c.id} — median warm login, ${fmt(median.ms)} ms (phases: /authorize ${fmt(median.phases.authorize)}, /login ${fmt(median.phases.login)}, provider ${fmt(median.phases.provider)}, /callback ${fmt(median.phases.callback)} ms):\n${trace(median)}`);
    traces.push(`${c.id} — cold (first) login, ${fmt(cold.ms)} ms:\n${trace(cold)}`);
  }
  for (const [id, why] of skipped) rows.push(`| ${id} | not run: ${why.replace(/\|/g, '\\|').replace(/\n/g, ' ')} | | | | | | | | |`);
  const table = rows.join('\n');
  const md = [
    '# hubauth login latency through redirect connectors',
    '',
    'Written by `bench/login/run.sh` — rerun it to refresh this file.',
    '',
    `- date: ${meta.date}`,
    `- machine: ${meta.machine}`,
    `- hubauth: \`${meta.rev}\` (${meta.build}, SQLite storage, fresh per run, in bench/login/work/)`,
    `- upstreams: fakes in one Node ${process.version} process (bench/login/fakes.mjs) on loopback, plain HTTP; every answer to hubauth leaves ${RTT} ms after its request arrived (**${RTT} ms per upstream round trip**; connection set-up is not delayed — over a real network each new TCP+TLS connection adds 1–2 more round trips). The browser's visit to the provider's authorize page is answered at once and not counted (it is the person's time at the provider).`,
    `- per connector: 1 cold login (first use: empty connection pool, discovery/JWKS not yet cached), then ${LOGINS} warm logins; connectors take turns, one login at a time, each in a fresh cookie jar; time = first \`GET /authorize\` until the \`303\` to the client's redirect_uri with the code`,
    `- other load: CPU ${meta.busyBefore} % busy just before the run; load average before / after: ${meta.loadBefore} / ${meta.loadAfter}`,
    `- harness accuracy: a fake's answer left on median ${meta.late} later than the ${RTT} ms it aims for (time to build the answer, timer and CPU scheduling on a shared machine)`,
    '',
    table,
    '',
    `Columns: *upstream requests/login* = requests hubauth made to the provider per warm login (a range if it varied); *sequential round trips* = the longest chain of those requests where each started only after the previous answer arrived (measured from arrival/answer times at the fakes); *max in flight* = most requests open at once; *floor* = sequential round trips × ${RTT} ms, what the upstream alone costs; *p50 − floor* = hubauth's own work plus the benchmark's browser (loopback HTTP, SQLite writes, sealing tokens, signing nothing: the code exchange is not included).`,
    '',
    '## Are the upstream requests minimal?',
    '',
    ...notes,
    ...(recorder.unknown.length ? ['', `Requests no fake knows (answered 404): ${[...new Set(recorder.unknown)].map((u) => `\`${u.replace(/access_token=[^&]+/, 'access_token=…')}\``).join(', ')}`] : []),
    '',
    '## Request traces',
    '',
    'Times from the login\'s first `GET /authorize`; phase = which browser step was waiting on hubauth.',
    '',
    '```',
    traces.join('\n\n'),
    '```',
    '',
  ].join('\n');
  return { table, md, notes };
}

// ------------------------------------------------------------------ main

async function main() {
  const servers = [];
  let hub = null;
  const stop = () => {
    if (hub && hub.exitCode === null) hub.kill('SIGTERM');
    for (const s of servers) {
      s.close();
      s.closeAllConnections();
    }
  };
  process.on('SIGINT', () => { stop(); process.exit(130); });
  process.on('SIGTERM', () => { stop(); process.exit(143); });
  try {
    const busyBefore = await busyPct();
    const loadBefore = loadavg();
    const all = await setUp(servers);
    const port = await freePort();
    const crypt = crypto.randomBytes(32).toString('hex');
    const env = { ...process.env, HUBAUTH_CRYPT_KEY: crypt, HUBAUTH_LOG: process.env.HUBAUTH_LOG || 'hubauth=info' };

    // One config per connector through check-config: a connector this build lacks is listed, not fatal.
    const connectors = [];
    const skipped = [];
    for (const c of all) {
      const file = path.join(WORK, `check-${c.id}.toml`);
      fs.writeFileSync(file, hubConfig(port, [c]));
      const r = spawnSync(HUBAUTH, ['check-config', '--config', file], { env, encoding: 'utf8' });
      if (r.status === 0) connectors.push(c);
      else {
        const why = (r.stderr || r.stdout || `exit ${r.status}`).trim().split('\n').filter((l) => !/^\s*$/.test(l)).slice(-1)[0];
        log(`skipping ${c.id}: ${why}`);
        skipped.push([c.id, why.replace(WORK + '/', '')]);
      }
    }
    if (!connectors.length) throw new Error('no connector passed check-config');

    const configFile = path.join(WORK, 'hubauth.toml');
    fs.rmSync(path.join(WORK, 'hubauth.db'), { force: true });
    fs.writeFileSync(configFile, hubConfig(port, connectors));
    const hubLog = fs.openSync(path.join(WORK, 'hubauth.log'), 'w');
    hub = spawn(HUBAUTH, ['serve', '--config', configFile], { env, stdio: ['ignore', hubLog, hubLog] });
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      if (hub.exitCode !== null) throw new Error(`hubauth exited (${hub.exitCode}); see ${path.join(WORK, 'hubauth.log')}`);
      try {
        const r = await fetch(`${base}/.well-known/openid-configuration`);
        if (r.ok) break;
      } catch { /* not up yet */ }
      if (i > 200) throw new Error('hubauth did not come up in 20 s');
      await sleep(100);
    }
    log(`hubauth ${HUBAUTH} on ${base}; connectors: ${connectors.map((c) => c.id).join(', ')}; ${LOGINS} warm logins each, RTT ${RTT} ms`);

    const results = new Map(connectors.map((c) => [c.id, []]));
    const raw = fs.createWriteStream(path.join(WORK, 'logins.jsonl'));
    for (let i = 0; i <= LOGINS; i++) {
      for (const c of connectors) {
        const run = await login(base, c);
        run.cold = i === 0;
        results.get(c.id).push(run);
        raw.write(JSON.stringify(run) + '\n');
      }
      if (i % 10 === 0) log(`  round ${i}/${LOGINS}`);
    }
    raw.end();
    const loadAfter = loadavg();

    const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) || [])[1] || os.cpus()[0]?.model || '?';
    const meta = {
      date: new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC',
      machine: `${os.cpus().length} cores (${cpu}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()}`,
      rev: process.env.HUBAUTH_REV || 'unknown',
      build: process.env.HUBAUTH_BUILD || path.relative(ROOT, HUBAUTH),
      busyBefore,
      loadBefore,
      loadAfter,
    };
    const late = [...results.values()].flat().flatMap((r) => r.requests.map((q) => q.end - q.start - RTT));
    meta.late = `${fmt(pct(late, 50))} ms (p95 ${fmt(pct(late, 95))}, max ${fmt(Math.max(...late))})`;
    const { table, md, notes } = buildReport(connectors, results, skipped, meta);
    fs.writeFileSync(OUT, md);
    console.log(table);
    console.log();
    console.log(notes.join('\n'));
    console.log();
    log(`wrote ${path.relative(process.cwd(), OUT) || OUT} (raw: ${path.join(WORK, 'logins.jsonl')}, hubauth log: ${path.join(WORK, 'hubauth.log')})`);
  } finally {
    stop();
  }
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exitCode = 1;
});
