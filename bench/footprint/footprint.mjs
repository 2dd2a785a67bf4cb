// Start-up time and memory of `hubauth serve` and `hubauth demo`: what a sizing guide can quote.
// Started by run.sh; see bench/README.md ("bench/footprint/").
//
// For each case, RUNS times: exec the binary, poll GET /.well-known/openid-configuration on a
// fresh connection every millisecond until it answers 200 (time from just before the exec to that
// answer), wait SETTLE_MS, read /proc/PID/status (VmRSS = idle RSS, RssAnon / RssFile, threads),
// then SIGTERM and time the exit. Cases: `serve` on an empty SQLite database (first start: makes
// the schema and the signing keys), `serve` again on that database (a restart: what a deployment
// sees at every boot), `demo` on an empty data directory and `demo` again on it.
//
// Then once under load: `serve` with bench/loadgen (the refresh benchmark of bench/run.sh, 16 and
// 64 clients) and RSS sampled every 50 ms during each refresh phase (loadgen --around-phase).
//
// Environment: HUBAUTH_BIN (required), LOADGEN (bench/target/release/hubauth-loadgen; no load
// phase without it), RUNS=9, SETTLE_MS=2000, LOAD_SECS=5, CASES=serve-first,serve,demo-first,demo,
// WORK=bench/footprint/work, HUBAUTH_REV, HUBAUTH_BUILD (a label), NOTE (a line for the results,
// e.g. the load on the machine). Prints the Markdown section run.sh puts into bench/RESULTS.md.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const HUBAUTH = process.env.HUBAUTH_BIN;
const LOADGEN = process.env.LOADGEN || '';
const RUNS = Number(process.env.RUNS || 9);
const SETTLE_MS = Number(process.env.SETTLE_MS || 2000);
const LOAD_SECS = Number(process.env.LOAD_SECS || 5);
const WORK = path.resolve(process.env.WORK || path.join(HERE, 'work'));
const CASES = (process.env.CASES || 'serve-first,serve,demo-first,demo').split(',');
if (!HUBAUTH) {
  console.error('HUBAUTH_BIN is not set (run bench/footprint/run.sh)');
  process.exit(2);
}
const log = (...a) => console.error(...a);
const PASSWORD = 'bench-password';
const SECRET = 'bench-secret-0123456789';

// ------------------------------------------------------------------ helpers

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** One GET on a fresh connection; resolves the status code, or null when nothing answers. */
function probe(port, pathname) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (v) => {
      sock.destroy();
      resolve(v);
    };
    sock.setNoDelay(true);
    sock.on('connect', () => sock.write(`GET ${pathname} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
      if (m && buf.includes('\r\n\r\n')) done(Number(m[1]));
    });
    sock.on('error', () => done(null));
    sock.on('end', () => done(null));
  });
}

function status(pid) {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text) || [])[1] || NaN);
  return {
    rss: kb('VmRSS'),
    anon: kb('RssAnon'),
    file: kb('RssFile'),
    hwm: kb('VmHWM'),
    threads: Number((/^Threads:\s+(\d+)/m.exec(text) || [])[1]),
  };
}

const mb = (kb) => (kb / 1024).toFixed(1);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const min = (xs) => Math.min(...xs);
const max = (xs) => Math.max(...xs);

function hashPassword(password) {
  const r = spawnSync(HUBAUTH, ['hash-password', '--password', password], { encoding: 'utf8' });
  const m = /\$argon2[^\s"]*/.exec(r.stdout || '');
  if (!m) throw new Error(`hubauth hash-password printed no hash: ${r.stderr}`);
  return m[0];
}

function serveConfig(dir, port, hash) {
  return `issuer = "http://127.0.0.1:${port}"
listen = "127.0.0.1:${port}"

[storage]
url = "sqlite://${dir}/hubauth.db"

[[clients]]
id = "bench-rs"
secret = "${SECRET}"
redirect_uris = ["http://127.0.0.1:9/cb"]
id_token_signed_response_alg = "RS256"

[[clients]]
id = "bench-es"
secret = "${SECRET}"
redirect_uris = ["http://127.0.0.1:9/cb"]
id_token_signed_response_alg = "ES256"

[[connectors]]
id = "dev"
type = "dev"
name = "Bench users"

[[connectors.users]]
username = "bench"
name = "Bench User"
password_hash = "${hash}"
groups = ["students"]
`;
}

/** Starts the command, polls discovery until 200. Returns { child, readyMs }. */
async function startAndWait(args, port, env, logFile) {
  const out = fs.openSync(logFile, 'w');
  const t0 = performance.now();
  const child = spawn(HUBAUTH, args, { env: { ...process.env, ...env }, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  let exited = null;
  child.on('exit', (code, sig) => (exited = { code, sig }));
  for (;;) {
    if (exited) throw new Error(`${args.join(' ')} exited (${JSON.stringify(exited)}); log:\n${fs.readFileSync(logFile, 'utf8')}`);
    const st = await probe(port, '/.well-known/openid-configuration');
    if (st === 200) return { child, readyMs: performance.now() - t0 };
    if (performance.now() - t0 > 30000) throw new Error(`no discovery answer within 30 s; log:\n${fs.readFileSync(logFile, 'utf8')}`);
    await sleep(1);
  }
}

async function stop(child) {
  const t0 = performance.now();
  const exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
  child.kill('SIGTERM');
  const r = await exited;
  return { ...r, ms: performance.now() - t0 };
}

// ------------------------------------------------------------------ the cases

fs.rmSync(WORK, { recursive: true, force: true });
fs.mkdirSync(WORK, { recursive: true });
const CRYPT = spawnSync(HUBAUTH, ['keys', 'generate-crypt-key'], { encoding: 'utf8' }).stdout.trim();
if (!CRYPT) throw new Error('hubauth keys generate-crypt-key printed nothing');
const HASH = hashPassword(PASSWORD);
const ENV = { HUBAUTH_CRYPT_KEY: CRYPT, HUBAUTH_LOG: 'hubauth=info' };

/** Prepares the per-case invocation; `fresh` = a new empty directory for this run. */
async function invocation(kind, run, fresh) {
  const dir = path.join(WORK, fresh ? `${kind}-${run}` : kind);
  const port = await freePort();
  fs.mkdirSync(dir, { recursive: true });
  if (kind === 'serve') {
    const config = path.join(dir, 'hubauth.toml');
    fs.writeFileSync(config, serveConfig(dir, port, HASH));
    return { dir, port, args: ['serve', '--config', config], env: ENV };
  }
  // The demo keeps its own crypt key in its data directory.
  const env = { ...ENV };
  delete env.HUBAUTH_CRYPT_KEY;
  return { dir, port, args: ['demo', '--data-dir', path.join(dir, 'data'), '--listen', `127.0.0.1:${port}`], env };
}

const rows = [];
const DESCRIBE = {
  'serve-first': ['serve', true, '`serve`, first start (empty SQLite: schema, signing keys made)'],
  serve: ['serve', false, '`serve`, restart (existing SQLite database)'],
  'demo-first': ['demo', true, '`demo`, first start (empty data directory)'],
  demo: ['demo', false, '`demo`, restart (existing data directory)'],
};
for (const name of CASES) {
  const [kind, fresh, label] = DESCRIBE[name];
  if (!fresh) {
    // The restart cases run on a database made by one start beforehand.
    const inv = await invocation(kind, 0, false);
    const { child } = await startAndWait(inv.args, inv.port, inv.env, path.join(inv.dir, 'prepare.log'));
    await stop(child);
  }
  const runs = [];
  for (let i = 1; i <= RUNS; i++) {
    const inv = await invocation(kind, i, fresh);
    const logFile = path.join(inv.dir, `run-${i}.log`);
    const { child, readyMs } = await startAndWait(inv.args, inv.port, inv.env, logFile);
    const atReady = status(child.pid);
    await sleep(SETTLE_MS);
    const idle = status(child.pid);
    const exit = await stop(child);
    runs.push({ readyMs, atReady, idle, exit });
    log(`${name} #${i}: ready ${readyMs.toFixed(1)} ms, RSS at ready ${mb(atReady.rss)} MiB, idle ${mb(idle.rss)} MiB (anon ${mb(idle.anon)}, file ${mb(idle.file)}), peak ${mb(idle.hwm)} MiB, ${idle.threads} threads, exit ${exit.code ?? exit.sig} after ${exit.ms.toFixed(0)} ms`);
  }
  rows.push({ name, label, runs });
}

// ------------------------------------------------------------------ under the refresh benchmark

let load = null;
if (LOADGEN && fs.existsSync(LOADGEN)) {
  const inv = await invocation('serve', 'load', true);
  const { child } = await startAndWait(inv.args, inv.port, inv.env, path.join(inv.dir, 'hubauth.log'));
  const before = status(child.pid);
  const samples = path.join(inv.dir, 'rss');
  fs.mkdirSync(samples);
  // Runs over each measured phase (loadgen --around-phase): VmRSS every 50 ms into a file per phase.
  const hook = path.join(inv.dir, 'sample.sh');
  fs.writeFileSync(
    hook,
    `#!/bin/sh\nf="${samples}/$BENCH_PHASE-$BENCH_CLIENTS"\ntrap 'exit 0' INT TERM\nwhile :; do awk '/^VmRSS/ {print $2}' /proc/${child.pid}/status >> "$f"; sleep 0.05; done\n`,
  );
  fs.chmodSync(hook, 0o755);
  const results = path.join(inv.dir, 'results.jsonl');
  const r = spawnSync(
    LOADGEN,
    ['run', '--base', `http://127.0.0.1:${inv.port}`, '--label', 'footprint', '--client-id', 'bench-es', '--secret', SECRET,
      '--username', 'bench', '--password', PASSWORD, '--expect-alg', 'ES256', '--server-pid', String(child.pid),
      '--secs', String(LOAD_SECS), '--warmup', '1', '--concurrency', '16,64', '--retries', '0', '--max-other', '100',
      '--out', results, '--around-phase', hook],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  if (r.status !== 0) throw new Error(`loadgen failed: ${r.stderr}`);
  const after = status(child.pid);
  await sleep(SETTLE_MS);
  const settled = status(child.pid);
  await stop(child);
  const phases = fs.readFileSync(results, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((p) => p.phase === 'refresh');
  const refresh = [];
  for (const clients of [16, 64]) {
    const f = path.join(samples, `refresh-${clients}`);
    const kbs = fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim().split('\n').map(Number).filter((x) => x > 0) : [];
    const p = phases.find((x) => x.clients === clients) || {};
    refresh.push({ clients, rps: p.rps, peak: kbs.length ? max(kbs) : NaN, median: kbs.length ? median(kbs) : NaN, samples: kbs.length });
  }
  load = { before, after, settled, refresh };
  log(`under load: ${JSON.stringify(load)}`);
}

// ------------------------------------------------------------------ report

const targetReady = 50;
const targetRss = 20 * 1024;
const lines = [];
lines.push('<!-- footprint: written by bench/footprint/run.sh; bench/run.sh keeps this section -->');
lines.push('## Footprint: start-up time and memory (bench/footprint)');
lines.push('');
lines.push(`- date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`);
lines.push(`- machine: ${os.cpus().length} cores (${(os.cpus()[0]?.model || '?').trim()}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Linux ${os.release()}`);
lines.push(`- hubauth: \`${process.env.HUBAUTH_REV || '?'}\` (${process.env.HUBAUTH_BUILD || 'given binary'}), SQLite, \`HUBAUTH_CRYPT_KEY\` set for \`serve\` (the demo uses its own)`);
if (process.env.NOTE) lines.push(`- ${process.env.NOTE}`);
lines.push(`- each start: ${RUNS} runs; *ready* = from just before the exec to the first 200 answer of GET /.well-known/openid-configuration (a new TCP connection every 1 ms until then); *idle RSS* = VmRSS ${SETTLE_MS / 1000} s after ready (anon = heap and stacks, file = mapped binary and libraries); min / median / max over the runs`);
lines.push('');
lines.push('| start | ready ms (min / median / max) | idle RSS MiB (min / median / max) | anon / file MiB (median) | peak RSS MiB (median) | threads | SIGTERM → exit ms (median) |');
lines.push('|---|--:|--:|--:|--:|--:|--:|');
for (const { label, runs } of rows) {
  const ready = runs.map((r) => r.readyMs);
  const rss = runs.map((r) => r.idle.rss);
  lines.push(
    `| ${label} | ${min(ready).toFixed(1)} / ${median(ready).toFixed(1)} / ${max(ready).toFixed(1)} | ${mb(min(rss))} / ${mb(median(rss))} / ${mb(max(rss))} | ${mb(median(runs.map((r) => r.idle.anon)))} / ${mb(median(runs.map((r) => r.idle.file)))} | ${mb(median(runs.map((r) => r.idle.hwm)))} | ${median(runs.map((r) => r.idle.threads))} | ${median(runs.map((r) => r.exit.ms)).toFixed(0)} |`,
  );
}
lines.push('');
const verdict = [];
for (const { name, label, runs } of rows.filter((r) => r.name === 'serve' || r.name === 'demo')) {
  const ready = median(runs.map((r) => r.readyMs));
  const rss = median(runs.map((r) => r.idle.rss));
  verdict.push(`| ${label}: ready (median) | < ${targetReady} ms | ${ready.toFixed(1)} ms | ${ready < targetReady ? 'met' : '**missed**'} |`);
  verdict.push(`| ${label}: idle RSS (median) | < 20 MiB | ${mb(rss)} MiB | ${rss < targetRss ? 'met' : '**missed**'} |`);
}
if (verdict.length) {
  lines.push('| target | want | got | |', '|---|--:|--:|---|', ...verdict, '');
}
if (load) {
  lines.push(`Under the refresh benchmark (\`serve\`, restart case's config on a fresh database, bench/loadgen as in bench/run.sh: ES256 client, refresh-token grants, ${LOAD_SECS} s per level after warm-up, then userinfo and code exchanges; RSS sampled every 50 ms during each refresh phase):`);
  lines.push('');
  lines.push('| refresh clients | req/s | RSS MiB during (median / peak) |');
  lines.push('|--:|--:|--:|');
  for (const r of load.refresh) lines.push(`| ${r.clients} | ${r.rps ? Math.round(r.rps) : '?'} | ${mb(r.median)} / ${mb(r.peak)} |`);
  lines.push('');
  lines.push(`RSS before the load ${mb(load.before.rss)} MiB; right after the whole loadgen run ${mb(load.after.rss)} MiB (peak over the process's life ${mb(load.after.hwm)} MiB, ${load.after.threads} threads); ${SETTLE_MS / 1000} s later ${mb(load.settled.rss)} MiB.`);
  lines.push('');
}
lines.push('<!-- /footprint -->');
const section = lines.join('\n') + '\n';
process.stdout.write(section);
