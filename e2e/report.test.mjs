// The activity report and bulk deprovisioning (issue 12) against real peers:
//
//  1. Home directories (a temporary tree: ada/ with 1 MiB, sam/, and one no user owns) measured by
//     a real prometheus-dirsize-exporter (PyPI, e2e venv; bound to 127.0.0.1), scraped every
//     second by a real Prometheus (Debian's). ada and sam sign in to `hubauth serve` (dev
//     connector); `hubauth report activity` with `[report] prometheus_url` shows each one's home
//     size and last change from Prometheus, in JSON and CSV.
//  2. A real JupyterHub (dummy authenticator) whose REST API knows ada and sam: `hubauth
//     deprovision --user ada --delete --delete-from-hub` as a dry run changes nothing (ada is
//     still in hubauth's report and in the hub's user list); with `--apply` she is gone from both,
//     sam stays; run again, it reports her as already gone and succeeds.
//  3. Prometheus stopped: the same report still succeeds (exit 0), without storage columns, and
//     says why (stderr for CSV, `notes` in JSON).
//
// Everything runs on 127.0.0.1 and is killed in after() (also on failure).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, rmSync, mkdirSync, existsSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, tempDir, run, startProcess, waitForHttp, signInAndRedeem, HUBAUTH_BIN } from './lib/harness.mjs';
import { VENV_BIN, startJupyterHub } from './lib/jupyterhub.mjs';
import { startHubauthServe, tomlStr } from './lib/upstream-oidc.mjs';

const PYTHON = path.join(VENV_BIN, 'python');
const PROMETHEUS = process.env.PROMETHEUS_BIN || '/usr/bin/prometheus';
const CLIENT_SECRET = randomBytes(24).toString('hex');
const HUB_ADMIN_TOKEN = randomBytes(24).toString('hex');
const REDIRECT = 'http://127.0.0.1:9/hub/oauth_callback'; // never served: the test reads the redirect
const PASSWORD = 'report-e2e-pass';
const ADA_BYTES = 1 << 20;

let workDir;
let homes;
let ports;
let configPath;
let hubauth;
let exporter;
let prometheus;
let hub;

function config(devHash) {
  return `issuer = ${tomlStr(`http://127.0.0.1:${ports.main}`)}
listen = ${tomlStr(`127.0.0.1:${ports.main}`)}
[storage]
url = ${tomlStr(`sqlite://${path.join(workDir, 'hubauth.db')}`)}
[report]
prometheus_url = ${tomlStr(`http://127.0.0.1:${ports.prometheus}`)}
prometheus_timeout = "3s"
[jupyterhub]
api_url = ${tomlStr(`http://127.0.0.1:${ports.hub}/hub/api`)}
api_token = { env = "E2E_HUB_ADMIN_TOKEN" }
[[clients]]
id = "hub"
secret = ${tomlStr(CLIENT_SECRET)}
redirect_uris = [${tomlStr(REDIRECT)}]
[[connectors]]
type = "dev"
id = "dev"
[[connectors.users]]
username = "ada"
password_hash = ${tomlStr(devHash)}
groups = ["physics"]
[[connectors.users]]
username = "sam"
password_hash = ${tomlStr(devHash)}
`;
}

/** `name` signs in through the login form and the hub client redeems the code. */
async function signIn(name) {
  return signInAndRedeem({
    base: `http://127.0.0.1:${ports.main}`, clientId: 'hub', clientSecret: CLIENT_SECRET, redirectUri: REDIRECT,
    username: name, password: PASSWORD,
  });
}

// The exporter has no address option; bind its prometheus_client server to loopback.
const EXPORTER = `
import functools, sys, prometheus_client
import prometheus_dirsize_exporter.exporter as e
e.start_http_server = functools.partial(prometheus_client.start_http_server, addr="127.0.0.1")
sys.argv = ["dirsize-exporter"] + sys.argv[1:]
e.main()
`;

async function startExporter() {
  const proc = startProcess(PYTHON, ['-u', '-c', EXPORTER, homes, '1000', '1', '--port', String(ports.exporter)], {
    logName: 'report-dirsize-exporter',
  });
  await waitForHttp(`http://127.0.0.1:${ports.exporter}/`, { proc, timeoutMs: 20_000, what: 'dirsize-exporter' });
  return proc;
}

async function startPrometheus() {
  const dir = path.join(workDir, 'prometheus');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'prometheus.yml');
  writeFileSync(file, `global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: dirsize
    static_configs:
      - targets: ["127.0.0.1:${ports.exporter}"]
`);
  const proc = startProcess(PROMETHEUS, [
    `--config.file=${file}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${ports.prometheus}`, '--log.level=warn',
  ], { logName: 'report-prometheus' });
  await waitForHttp(`http://127.0.0.1:${ports.prometheus}/-/ready`, { proc, timeoutMs: 20_000, what: 'prometheus' });
  return proc;
}

async function hubApi(method, p) {
  return fetch(`http://127.0.0.1:${ports.hub}/hub/api${p}`, {
    method, headers: { authorization: `token ${HUB_ADMIN_TOKEN}` }, signal: AbortSignal.timeout(10_000),
  });
}

async function hubauthCli(args) {
  try {
    const { stdout, stderr } = await run(HUBAUTH_BIN, args, {
      env: { ...process.env, E2E_HUB_ADMIN_TOKEN: HUB_ADMIN_TOKEN }, timeout: 60_000,
    });
    return { ok: true, stdout, stderr };
  } catch (e) {
    return { ok: false, stdout: e.stdout ?? '', stderr: e.stderr ?? e.message };
  }
}

async function reportJson() {
  const r = await hubauthCli(['report', 'activity', '--config', configPath, '--format', 'json']);
  assert.ok(r.ok, r.stderr);
  return JSON.parse(r.stdout);
}

const userOf = (report, name) => report.users.find((u) => u.username === name);

describe('activity report with a real Prometheus + dirsize exporter, deprovision with a real JupyterHub', { timeout: 240_000 }, () => {
  before(async () => {
    assert.ok(existsSync(PROMETHEUS), `${PROMETHEUS} missing (scripts/install-test-deps.sh installs Debian's prometheus)`);
    assert.ok(existsSync(PYTHON), `${PYTHON} missing (scripts/install-test-deps.sh makes the venv)`);
    workDir = tempDir('report');
    homes = path.join(workDir, 'homes');
    for (const d of ['ada', 'sam', 'nobody-owns-this']) mkdirSync(path.join(homes, d), { recursive: true });
    writeFileSync(path.join(homes, 'ada', 'data.bin'), randomBytes(ADA_BYTES));
    writeFileSync(path.join(homes, 'sam', 'notes.txt'), 'hello\n');
    ports = {
      main: await freePort(), exporter: await freePort(), prometheus: await freePort(),
      hub: await freePort(), hubApi: await freePort(), proxyApi: await freePort(),
    };
    const devHash = (await run(HUBAUTH_BIN, ['hash-password', '--password', PASSWORD])).stdout.trim();
    hubauth = await startHubauthServe({
      name: 'report-hubauth', dir: workDir, port: ports.main, toml: config(devHash),
      env: { E2E_HUB_ADMIN_TOKEN: HUB_ADMIN_TOKEN },
    });
    configPath = hubauth.configPath;
    await signIn('ada');
    await signIn('sam');
    exporter = await startExporter();
    prometheus = await startPrometheus();
    hub = await startJupyterHub({
      name: 'report', workDir, hubUrl: `http://127.0.0.1:${ports.hub}`, hubApiPort: ports.hubApi,
      proxyApiPort: ports.proxyApi, adminToken: HUB_ADMIN_TOKEN,
      fragment: "c = get_config()  # noqa\nc.JupyterHub.authenticator_class = 'dummy'\n",
    });
    for (const name of ['ada', 'sam']) {
      const r = await hubApi('POST', `/users/${name}`);
      assert.equal(r.status, 201, `the hub creates ${name}: ${await r.text()}`);
    }
  });

  after(async () => {
    await hub?.proc.stop();
    await prometheus?.stop();
    await exporter?.stop();
    await hubauth?.stop();
    if (workDir && !process.env.E2E_KEEP_TMP) rmSync(workDir, { recursive: true, force: true });
  });

  it('the report joins each user with their home directory from Prometheus', async () => {
    let report;
    const deadline = Date.now() + 60_000;
    for (;;) {
      report = await reportJson();
      if (report.storage && userOf(report, 'ada')?.home_size_bytes && userOf(report, 'sam')?.home_size_bytes) break;
      assert.ok(Date.now() < deadline, `no storage columns within 60 s: ${JSON.stringify(report)}`);
      await sleep(1000);
    }
    assert.deepEqual(report.users.map((u) => u.username), ['ada', 'sam']);
    const ada = userOf(report, 'ada');
    assert.equal(ada.home_directory, 'ada');
    assert.ok(ada.home_size_bytes >= ADA_BYTES, `ada's home holds her 1 MiB: ${ada.home_size_bytes}`);
    const mtime = statSync(path.join(homes, 'ada', 'data.bin')).mtimeMs / 1000;
    assert.ok(Math.abs(ada.home_last_change_at - mtime) < 5, `${ada.home_last_change_at} vs ${mtime}`);
    assert.ok(userOf(report, 'sam').home_size_bytes < ADA_BYTES);
    assert.deepEqual(ada.groups, ['physics']);
    assert.deepEqual(report.notes, []);

    const csv = await hubauthCli(['report', 'activity', '--config', configPath, '--format', 'csv']);
    assert.ok(csv.ok, csv.stderr);
    const [header, ...rows] = csv.stdout.trim().split('\n').map((l) => l.split(','));
    const col = (name) => header.indexOf(name);
    assert.ok(col('home_size_bytes') > 0, header.join(','));
    assert.ok(Number(rows[0][col('home_size_bytes')]) >= ADA_BYTES, csv.stdout);
  });

  it('deprovision: a dry run changes nothing; --apply deletes ada here and on the hub; a re-run is fine', async () => {
    const args = ['deprovision', '--config', configPath, '--user', 'ada', '--delete', '--delete-from-hub'];
    const dry = await hubauthCli(args);
    assert.ok(dry.ok, dry.stderr);
    assert.match(dry.stdout, /ada: would revoke sessions and tokens, and delete; would delete from the hub/);
    assert.equal((await hubApi('GET', '/users/ada')).status, 200, 'the dry run left ada on the hub');
    assert.ok(userOf(await reportJson(), 'ada'), 'and in hubauth');

    const applied = await hubauthCli([...args, '--apply']);
    assert.ok(applied.ok, `${applied.stdout}\n${applied.stderr}`);
    assert.match(applied.stdout, /ada: deleted \(1 grant\(s\) revoked\); deleted from the hub/);
    assert.equal((await hubApi('GET', '/users/ada')).status, 404, 'gone from the hub');
    const list = await (await hubApi('GET', '/users')).json();
    assert.deepEqual(list.map((u) => u.name), ['sam']);
    assert.deepEqual((await reportJson()).users.map((u) => u.username), ['sam']);

    const again = await hubauthCli([...args, '--apply']);
    assert.ok(again.ok, again.stderr);
    assert.match(again.stdout, /ada: not a hubauth user \(already deleted\?\); not on the hub \(already deleted\?\)/);
  });

  it('with Prometheus stopped the report still works, without storage columns and with a note', async () => {
    await prometheus.stop();
    prometheus = undefined;
    const json = await reportJson();
    assert.equal(json.storage, false);
    assert.equal(userOf(json, 'sam').home_size_bytes, undefined);
    assert.match(json.notes[0], /no storage columns: Prometheus at .* cannot connect/);
    const csv = await hubauthCli(['report', 'activity', '--config', configPath, '--format', 'csv']);
    assert.ok(csv.ok, csv.stderr);
    assert.match(csv.stderr, /note: no storage columns/);
    assert.ok(!csv.stdout.split('\n')[0].includes('home_size_bytes'));
  });
});
