// Login storm: STORM_LOGINS sign-ins started at the same moment, each the whole browser flow
// through hubauth's `oidc` connector against a fake upstream that answers every request hubauth
// makes 50 ms after it arrived (bench/storm/upstream.mjs, a process of its own), then the code
// exchange. Run on (a) one hubauth on SQLite and (b) two hubauth replicas on one PostgreSQL, each
// behind HAProxy (round-robin, no stickiness, X-Forwarded-For believed from it). Started by
// run.sh; see bench/README.md ("bench/storm/").
//
// Per sign-in, in a fresh cookie jar like a browser:
//   authorize  GET /authorize?…&connector=oidc → 303 /login → 303 to the provider
//   (provider) the fake approves at once → 302 /callback/oidc (not hubauth's time, not reported)
//   callback   GET /callback/oidc → hubauth redeems the upstream code (token, then userinfo:
//              2 upstream round trips, 100 ms floor) → 303 to the client with a code
//   token      POST /token (authorization_code, PKCE S256, client_secret_basic) → ID token
// Every answer is checked (status, Location, state, the ID token's nonce); anything else is a
// failure of that step. Writes RESULTS.md and work/storm-<mode>.jsonl (every sign-in).
//
// Environment: HUBAUTH_BIN (required), STORM_LOGINS=1000, RTT_MS=50, STORM_MODES=sqlite,pg,
// STORM_PG_URL + STORM_PG_CA (pg mode: an empty database for it), STORM_PG_PID (postmaster, for
// its CPU), STORM_PG_INFO (a line for the report), HAPROXY=/usr/sbin/haproxy, STORM_WARMUP=20,
// WORK, OUT, HUBAUTH_REV, HUBAUTH_BUILD, BUSY_BEFORE / LOAD_BEFORE (from run.sh).

import { fork, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import { browse, freePort, pct } from '../login/util.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const HUBAUTH = process.env.HUBAUTH_BIN;
const LOGINS = Number(process.env.STORM_LOGINS || 1000);
const WARMUP = Number(process.env.STORM_WARMUP || 20);
const RTT = Number(process.env.RTT_MS || 50);
const MODES = (process.env.STORM_MODES || 'sqlite,pg').split(',').map((s) => s.trim()).filter(Boolean);
const HAPROXY = process.env.HAPROXY || '/usr/sbin/haproxy';
const WORK = path.resolve(process.env.WORK || path.join(HERE, 'work'));
const OUT = path.resolve(process.env.OUT || path.join(HERE, 'RESULTS.md'));
const CLIENT = { id: 'bench-storm', secret: 'bench-storm-secret-0123456789', redirect: 'http://127.0.0.1:9/cb' };
const UPSTREAM = { id: 'hubauth-storm', secret: 'upstream-secret-0123456789' };
if (!HUBAUTH) {
  console.error('HUBAUTH_BIN is not set (run bench/storm/run.sh)');
  process.exit(2);
}
fs.mkdirSync(WORK, { recursive: true });
const log = (...a) => console.error(...a);
const now = () => performance.now();

// ------------------------------------------------------------------ processes and CPU


const CLK = 100; // USER_HZ
function cpuOf(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK;
  } catch {
    return null;
  }
}
/** CPU seconds of pid and every process below it, per pid (PostgreSQL: postmaster + backends). */
function treeCpu(root) {
  const parent = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      parent.set(Number(d), Number(fs.readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1]));
    } catch { /* gone */ }
  }
  const out = new Map();
  for (const pid of parent.keys()) {
    let p = pid;
    for (let i = 0; i < 64 && p && p !== root; i++) p = parent.get(p);
    if (p === root) out.set(pid, cpuOf(pid) ?? 0);
  }
  return out;
}
const treeDelta = (a, b) => [...b].reduce((s, [pid, c]) => s + Math.max(0, c - (a.get(pid) ?? 0)), 0);
function machineBusy() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / CLK;
}

async function waitUp(url, child, name, logFile) {
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}); see ${logFile}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch { /* not up yet */ }
    if (i > 300) throw new Error(`${name} did not come up in 30 s; see ${logFile}`);
    await sleep(100);
  }
}

function hubConfig({ port, issuer, storage, upstreamIssuer }) {
  const lines = [
    `issuer = ${JSON.stringify(issuer)}`,
    `listen = "127.0.0.1:${port}"`,
    // HAProxy on loopback is the only proxy: its X-Forwarded-For names the browser.
    'trusted_proxies = ["127.0.0.1/32"]',
    '',
    '[storage]',
    ...storage,
    '',
    '[session]',
    // Every simulated browser comes from 127.0.0.1: the per-address cap (default 1000) would
    // refuse a storm from one address that a real hub sees from many.
    'max_pending_per_address = 100000',
    '',
    '[[clients]]',
    `id = ${JSON.stringify(CLIENT.id)}`,
    `secret = ${JSON.stringify(CLIENT.secret)}`,
    `redirect_uris = [${JSON.stringify(CLIENT.redirect)}]`,
    '',
    '[[connectors]]',
    'type = "oidc"',
    'id = "oidc"',
    'name = "Storm OIDC"',
    `issuer = ${JSON.stringify(upstreamIssuer)}`,
    `client_id = ${JSON.stringify(UPSTREAM.id)}`,
    `client_secret = ${JSON.stringify(UPSTREAM.secret)}`,
    'scope = ["openid", "profile", "email"]',
    'groups_claim = "groups"',
    'token_endpoint_auth = "client_secret_basic"',
  ];
  return lines.join('\n') + '\n';
}

function haproxyConfig(port, statsPort, servers) {
  return `global
  maxconn 8000
  nbthread 1

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option forwardfor
  maxconn 8000

frontend storm
  bind 127.0.0.1:${port}
  default_backend hubauth

frontend stats
  bind 127.0.0.1:${statsPort}
  stats enable
  stats uri /stats

backend hubauth
  balance roundrobin
  http-response set-header X-Bench-Replica %[srv_name]
${servers.map((s) => `  server ${s.name} 127.0.0.1:${s.port}`).join('\n')}
`;
}

// ------------------------------------------------------------------ the browser

async function request(jar, url, opts) {
  const r = await browse(jar, url, opts);
  return { ...r, replica: r.headers['x-bench-replica'] || null };
}

class StepError extends Error {}
function expectRedirect(what, r) {
  if (![302, 303].includes(r.status) || !r.location) {
    const t = r.body.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 200);
    throw new StepError(`${what}: ${r.status} ${t}`);
  }
  return r.location;
}

/** One sign-in as person `who`; times per step, the replicas that served it, or the failure. */
async function signIn(hub, upstreamOrigin, who) {
  const jar = new Map();
  const verifier = crypto.randomBytes(32).toString('base64url');
  const state = crypto.randomBytes(16).toString('base64url');
  const nonce = crypto.randomBytes(16).toString('base64url');
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT.id,
    redirect_uri: CLIENT.redirect,
    scope: 'openid profile email groups',
    state,
    nonce,
    code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    connector: 'oidc',
  });
  const out = { who, ms: {}, replicas: {}, ok: false };
  let step = 'authorize';
  let t0 = now();
  const start = t0;
  try {
    // authorize: hubauth's redirects until the browser is sent to the provider.
    let url = `${hub}/authorize?${q}`;
    for (let hops = 0; ; hops++) {
      const r = await request(jar, url);
      (out.replicas.authorize ||= []).push(r.replica);
      url = expectRedirect(new URL(url).pathname, r);
      if (url.startsWith(upstreamOrigin)) break;
      if (hops > 4) throw new StepError(`authorize: no redirect to the provider after ${hops} hops`);
    }
    out.ms.authorize = now() - t0;
    step = 'provider';
    t0 = now();
    const p = new URL(url);
    p.searchParams.set('bench_user', String(who));
    url = expectRedirect('provider', await request(jar, p.toString(), { atProvider: true }));
    out.ms.provider = now() - t0;
    step = 'callback';
    t0 = now();
    for (let hops = 0; ; hops++) {
      const r = await request(jar, url);
      (out.replicas.callback ||= []).push(r.replica);
      url = expectRedirect(new URL(url).pathname, r);
      if (url.startsWith(CLIENT.redirect)) break;
      if (hops > 4) throw new StepError(`callback: no redirect to the client after ${hops} hops`);
    }
    const back = new URL(url);
    const code = back.searchParams.get('code');
    if (!code || back.searchParams.get('state') !== state) throw new StepError('callback: redirect without a code for this request');
    out.ms.callback = now() - t0;
    step = 'token';
    t0 = now();
    const r = await request(new Map(), `${hub}/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${CLIENT.id}:${CLIENT.secret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: CLIENT.redirect, code_verifier: verifier }).toString(),
    });
    out.replicas.token = [r.replica];
    if (r.status !== 200) throw new StepError(`token: ${r.status} ${r.body.slice(0, 200)}`);
    const t = JSON.parse(r.body);
    const claims = JSON.parse(Buffer.from(String(t.id_token).split('.')[1] || '', 'base64url').toString('utf8') || '{}');
    if (!t.access_token || claims.nonce !== nonce) throw new StepError('token: no access token or an ID token for another request');
    out.sub = claims.sub;
    out.ms.token = now() - t0;
    out.ms.total = now() - start;
    out.ok = true;
  } catch (e) {
    out.failed = step;
    out.error = e instanceof StepError ? e.message : `${step}: ${e.code || e.cause?.code || e.message}`;
  }
  return out;
}

// ------------------------------------------------------------------ one setup

async function runMode(mode, upstream) {
  const cleanup = [];
  const kill = (child) => cleanup.push(() => child.exitCode === null && child.kill('SIGTERM'));
  try {
    const replicas = mode === 'pg' ? 2 : 1;
    const lbPort = await freePort();
    const statsPort = await freePort();
    const issuer = `http://127.0.0.1:${lbPort}`;
    let storage;
    if (mode === 'pg') {
      if (!process.env.STORM_PG_URL) throw new Error('pg mode needs STORM_PG_URL (run.sh sets it)');
      storage = [`url = ${JSON.stringify(process.env.STORM_PG_URL)}`];
      if (process.env.STORM_PG_CA) storage.push(`ssl_root_cert = ${JSON.stringify(process.env.STORM_PG_CA)}`);
    } else {
      const db = path.join(WORK, 'storm-sqlite.db');
      for (const f of [db, `${db}-wal`, `${db}-shm`]) fs.rmSync(f, { force: true });
      storage = [`url = ${JSON.stringify(`sqlite://${db}`)}`];
    }
    // One crypt key for all replicas: each must unseal what another sealed.
    const env = { ...process.env, HUBAUTH_CRYPT_KEY: crypto.randomBytes(32).toString('hex'), HUBAUTH_LOG: process.env.HUBAUTH_LOG || 'hubauth=warn' };
    const servers = [];
    for (let i = 0; i < replicas; i++) {
      const port = await freePort();
      const name = `${mode}-${i + 1}`;
      const file = path.join(WORK, `storm-${name}.toml`);
      fs.writeFileSync(file, hubConfig({ port, issuer, storage, upstreamIssuer: upstream.issuer }));
      const logFile = path.join(WORK, `storm-${name}.log`);
      const fd = fs.openSync(logFile, 'w');
      const child = spawn(HUBAUTH, ['serve', '--config', file], { env, stdio: ['ignore', fd, fd] });
      kill(child);
      // One after the other: the first creates the schema and the signing key, the next finds them.
      await waitUp(`http://127.0.0.1:${port}/healthz`, child, name, logFile);
      servers.push({ name, port, child });
    }
    const hcfg = path.join(WORK, `storm-${mode}-haproxy.cfg`);
    fs.writeFileSync(hcfg, haproxyConfig(lbPort, statsPort, servers));
    const hlog = path.join(WORK, `storm-${mode}-haproxy.log`);
    const lb = spawn(HAPROXY, ['-db', '-f', hcfg], { stdio: ['ignore', fs.openSync(hlog, 'w'), fs.openSync(hlog, 'a')] });
    kill(lb);
    const hub = issuer;
    await waitUp(`${hub}/.well-known/openid-configuration`, lb, 'haproxy', hlog);
    const upstreamOrigin = new URL(upstream.issuer).origin;

    // Warm-up: discovery and JWKS cached, connection pools filled, on every replica.
    for (let i = 0; i < WARMUP; i += 4) {
      const batch = await Promise.all([0, 1, 2, 3].map((k) => signIn(hub, upstreamOrigin, `w${mode}${i + k}`)));
      const bad = batch.find((b) => !b.ok);
      if (bad) throw new Error(`warm-up sign-in failed: ${bad.error}`);
    }
    await upstream.stats();
    log(`${mode}: ${replicas} replica(s) behind HAProxy ${hub}; ${LOGINS} sign-ins at once`);

    const hubPids = servers.map((s) => s.child.pid);
    const pgPid = mode === 'pg' && process.env.STORM_PG_PID ? Number(process.env.STORM_PG_PID) : null;
    const c0 = {
      hub: hubPids.map(cpuOf),
      lb: cpuOf(lb.pid),
      pg: pgPid ? treeCpu(pgPid) : null,
      self: process.cpuUsage(),
      machine: machineBusy(),
      t: now(),
    };
    const runs = await Promise.all(Array.from({ length: LOGINS }, (_, i) => signIn(hub, upstreamOrigin, `${mode}${i}`)));
    const wall = (now() - c0.t) / 1000;
    const self = process.cpuUsage(c0.self);
    const cpu = {
      hub: hubPids.map((p, i) => (cpuOf(p) - c0.hub[i]) / wall),
      lb: (cpuOf(lb.pid) - c0.lb) / wall,
      pg: pgPid ? treeDelta(c0.pg, treeCpu(pgPid)) / wall : null,
      driver: (self.user + self.system) / 1e6 / wall,
      machine: (machineBusy() - c0.machine) / wall,
    };
    const up = await upstream.stats();
    cpu.upstream = up.cpu / wall;
    cpu.other = Math.max(0, cpu.machine - cpu.hub.reduce((a, b) => a + b, 0) - cpu.lb - (cpu.pg || 0) - cpu.driver - cpu.upstream);
    const raw = fs.createWriteStream(path.join(WORK, `storm-${mode}.jsonl`));
    for (const r of runs) raw.write(JSON.stringify(r) + '\n');
    raw.end();

    let perReplica = {};
    try {
      const csv = await (await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)).text();
      const head = csv.split('\n')[0].replace(/^# /, '').split(',');
      for (const line of csv.split('\n').slice(1)) {
        const f = line.split(',');
        if (f[0] === 'hubauth' && f[1] !== 'BACKEND' && f[1] !== 'FRONTEND') perReplica[f[1]] = Number(f[head.indexOf('stot')]);
      }
    } catch (e) {
      perReplica = { error: String(e) };
    }
    return { mode, replicas, runs, wall, cpu, upstream: up, perReplica };
  } finally {
    for (const c of cleanup.reverse()) c();
    await sleep(300);
  }
}

// ------------------------------------------------------------------ report

const fmt = (x) => (x === undefined || !Number.isFinite(x) ? '–' : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const pc = (x) => (x === null || x === undefined ? '–' : `${Math.round(x * 100)}%`);
const STEPS = ['authorize', 'callback', 'token', 'total'];
const LABEL = { sqlite: '(a) 1 replica, SQLite', pg: '(b) 2 replicas, PostgreSQL' };

function report(results, meta) {
  const rows = [
    '| setup | sign-ins | failures | authorize p50 / p99 ms | callback p50 / p99 ms | code exchange p50 / p99 ms | whole sign-in p50 / p99 / max ms | storm took s | sign-ins/s |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  const cpuRows = [
    '| setup | hubauth (per replica) | PostgreSQL | HAProxy | driver (Node) | fake upstream | everything else |',
    '|---|--:|--:|--:|--:|--:|--:|',
  ];
  const targets = ['| target | want | got | |', '|---|--:|--:|---|'];
  const notes = [];
  for (const r of results) {
    const ok = r.runs.filter((x) => x.ok);
    const failed = r.runs.filter((x) => !x.ok);
    const ms = (s) => ok.map((x) => x.ms[s]);
    const cell = (s) => `${fmt(pct(ms(s), 50))} / ${fmt(pct(ms(s), 99))}`;
    rows.push(`| ${LABEL[r.mode]} | ${r.runs.length} | ${failed.length} | ${cell('authorize')} | ${cell('callback')} | ${cell('token')} | ${cell('total')} / ${fmt(Math.max(...ms('total')))} | ${r.wall.toFixed(2)} | ${fmt(ok.length / r.wall)} |`);
    cpuRows.push(`| ${LABEL[r.mode]} | ${r.cpu.hub.map(pc).join(' + ')} | ${pc(r.cpu.pg)} | ${pc(r.cpu.lb)} | ${pc(r.cpu.driver)} | ${pc(r.cpu.upstream)} | ${pc(r.cpu.other)} |`);
    const worst = Math.max(...['authorize', 'callback', 'token'].map((s) => pct(ms(s), 99)));
    targets.push(`| ${LABEL[r.mode]}: failures | 0 | ${failed.length} | ${failed.length === 0 ? 'met' : '**missed**'} |`);
    targets.push(`| ${LABEL[r.mode]}: p99 of every step | < 2000 ms | ${fmt(worst)} ms | ${worst < 2000 ? 'met' : '**missed**'} |`);
    const byStep = {};
    for (const f of failed) byStep[f.failed] = (byStep[f.failed] || 0) + 1;
    const subs = new Set(ok.map((x) => x.sub));
    let n = `- ${LABEL[r.mode]}: ${ok.length} of ${r.runs.length} sign-ins finished with an ID token for their own request; ${subs.size} distinct \`sub\` among them (one per person: no sign-in got another's account)`;
    if (failed.length) n += `; failures by step: ${Object.entries(byStep).map(([k, v]) => `${k} ${v}`).join(', ')}; first: \`${failed[0].error.replace(/`/g, "'")}\``;
    const rep = Object.entries(r.perReplica).map(([k, v]) => `${k} ${v}`).join(', ');
    n += `. Requests per replica (HAProxy): ${rep}.`;
    if (r.replicas > 1) {
      const crossed = ok.filter((x) => new Set([...x.replicas.authorize, ...x.replicas.callback, ...x.replicas.token]).size > 1).length;
      const tokenElsewhere = ok.filter((x) => !x.replicas.callback.includes(x.replicas.token[0])).length;
      n += ` ${crossed} of ${ok.length} sign-ins were served by both replicas; in ${tokenElsewhere} the code was redeemed on another replica than the one that issued it.`;
    }
    n += ` Upstream: ${r.upstream.requests} requests from hubauth (${Object.entries(r.upstream.paths).map(([k, v]) => `${v} ${k}`).join(', ')}), ${r.upstream.newConnections} on new TCP connections; answers left ${fmt(r.upstream.late.p50)} ms (p99 ${fmt(r.upstream.late.p99)}, max ${fmt(r.upstream.late.max)}) later than the ${RTT} ms aimed for.`;
    notes.push(n);
  }
  const table = [rows.join('\n'), '', targets.join('\n')].join('\n');
  const md = [
    '# hubauth login storm',
    '',
    'Written by `bench/storm/run.sh` — rerun it to refresh this file.',
    '',
    `- date: ${meta.date}`,
    `- machine: ${meta.machine}; other load: CPU ${meta.busyBefore} % busy just before the run, load average before / after: ${meta.loadBefore} / ${meta.loadAfter}${meta.waited} (other helpers may have been compiling on this machine during the run: *everything else* in the CPU table below is their share)`,
    `- hubauth: \`${meta.rev}\` (${meta.build}); HAProxy ${meta.haproxy} in front (\`balance roundrobin\`, no stickiness, \`option forwardfor\`; hubauth \`trusted_proxies = ["127.0.0.1/32"]\`, \`[session] max_pending_per_address = 100000\` as every browser here is 127.0.0.1); Node ${process.version} drives the browsers (node:http, one keep-alive agent, in one thread)`,
    `- storage: (a) SQLite (WAL, synchronous=NORMAL) in ${path.relative(process.cwd(), WORK) || WORK}; (b) ${meta.pg || 'PostgreSQL'}; pool_size 10 per replica`,
    `- upstream: the Keycloak-style fake of bench/login/fakes.mjs (ES256 ID tokens) in a Node process of its own; every answer to hubauth leaves **${RTT} ms** after its request arrived; the browser's visit to the provider is answered at once and not reported; one upstream account per sign-in`,
    `- each setup: ${WARMUP} warm-up sign-ins (4 at a time), then **${LOGINS} sign-ins started at the same moment** (all in flight together: a burst, the worst case of a class signing in at once), each in a fresh cookie jar; time per step from its first request to the answer that ends it`,
    '- everything (hubauth replicas, PostgreSQL, HAProxy, the fake, the driver) shares these 2 cores: the CPU table shows who used them during the storm',
    '',
    table,
    '',
    'Steps: *authorize* = `GET /authorize` → `303 /login` → `303` to the provider (hubauth stores the pending sign-in and the upstream attempt); *callback* = `GET /callback/oidc` → `303` to the client with a code (2 upstream round trips = 100 ms floor: token, then userinfo; user upsert, browser session, code); *code exchange* = `POST /token` (PKCE, client_secret_basic; grant, tokens, RS256 ID token); *whole sign-in* includes the provider visit.',
    '',
    'CPU during the storm, % of one core:',
    '',
    cpuRows.join('\n'),
    '',
    ...notes,
    '',
  ].join('\n');
  return { table, md };
}

// ------------------------------------------------------------------ main

async function startUpstream() {
  const child = fork(path.join(HERE, 'upstream.mjs'), [], { env: { ...process.env, RTT_MS: String(RTT) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const issuer = await new Promise((resolve, reject) => {
    child.once('message', (m) => resolve(m.issuer));
    child.once('exit', (c) => reject(new Error(`fake upstream exited (${c})`)));
  });
  let cpu0 = cpuOf(child.pid);
  return {
    child,
    issuer,
    stats: () => new Promise((resolve) => {
      child.once('message', (m) => {
        const c = cpuOf(child.pid);
        resolve({ ...m.stats, cpu: c - cpu0 });
        cpu0 = c;
      });
      child.send({ stats: true });
    }),
  };
}

async function main() {
  const upstream = await startUpstream();
  try {
    const loadBefore = os.loadavg().map((x) => x.toFixed(2)).join(' ');
    const results = [];
    for (const mode of MODES) results.push(await runMode(mode, upstream));
    const cpuModel = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) || [])[1] || '?';
    const hv = spawn(HAPROXY, ['-v']);
    let hvText = '';
    hv.stdout.on('data', (d) => { hvText += d; });
    await new Promise((r) => hv.on('close', r));
    const meta = {
      date: new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC',
      machine: `${os.cpus().length} cores (${cpuModel}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()}`,
      rev: process.env.HUBAUTH_REV || 'unknown',
      build: process.env.HUBAUTH_BUILD || HUBAUTH,
      busyBefore: process.env.BUSY_BEFORE ?? '?',
      loadBefore: process.env.LOAD_BEFORE || loadBefore,
      loadAfter: os.loadavg().map((x) => x.toFixed(2)).join(' '),
      waited: process.env.WAITED || '',
      haproxy: (/version (\S+)/.exec(hvText) || [])[1] || '?',
      pg: process.env.STORM_PG_INFO,
    };
    const { table, md } = report(results, meta);
    fs.writeFileSync(OUT, md);
    console.log(table);
    log(`wrote ${OUT} (raw: ${WORK}/storm-*.jsonl)`);
  } finally {
    upstream.child.kill('SIGTERM');
  }
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exitCode = 1;
});
