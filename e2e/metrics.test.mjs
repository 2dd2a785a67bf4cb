// Metrics and probes end to end, with a real Prometheus (Debian's `prometheus`) and the parsers of
// Python's `prometheus_client`:
//
//  1. `hubauth serve` with `[metrics] listen` on a port of its own (and a scrape token): the main
//     port serves no /metrics; the operations port answers /healthz, /readyz and /metrics (401
//     without the token).
//  2. A Prometheus scraping that port every second (Bearer token from its config) sees the target
//     up; after ada signs in (authorization code + PKCE through the login form) its HTTP API's
//     PromQL queries return hubauth_logins_total{connector="dev",outcome="admitted"} = 1,
//     hubauth_token_grants_total{grant_type="authorization_code",result="ok"} = 1 and ada's
//     hubauth_user_group_info{usergroup="admins"} series with jupyterhub-groups-exporter's labels.
//     Every query of the Grafana dashboard in docs/ is accepted by that Prometheus.
//  3. The exposition parses with prometheus_client's text parser
//     (`prometheus_client.parser.text_string_to_metric_families`) and its strict OpenMetrics one;
//     both read every sample back with its labels and value, the OpenMetrics one also the types.
//  4. Memberships change (hubauth restarted with ada in "staff" instead of "admins"; her next
//     userinfo re-checks her): Prometheus's series for "admins" goes away and one for "staff" comes.
//
// Every wait is bounded; the whole file takes about 20 s. Everything runs on 127.0.0.1 and is
// killed in after() (also on failure).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync, rmSync, mkdirSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  freePort, tempDir, run, startProcess, waitForHttp, artifactPath, CookieJar, browse, signInAndRedeem, HUBAUTH_BIN, REPO_ROOT,
} from './lib/harness.mjs';
import { VENV_BIN } from './lib/jupyterhub.mjs';
import { startHubauthServe, tomlStr } from './lib/upstream-oidc.mjs';

const PYTHON = path.join(VENV_BIN, 'python');
const PROMETHEUS = process.env.PROMETHEUS_BIN || '/usr/bin/prometheus';
const SCRAPE_TOKEN = randomBytes(24).toString('hex');
const CLIENT_SECRET = randomBytes(24).toString('hex');
const REDIRECT = 'http://127.0.0.1:9/hub/oauth_callback'; // never served: the test reads the redirect
const PASSWORD = 'ada-metrics-pass';
const CRYPT_KEY = randomBytes(32).toString('hex'); // the same for both starts: it seals the signing keys

let workDir;
let hubauth;
let prometheus;
let ports;
let devHash;

function config(groups) {
  return `issuer = ${tomlStr(`http://127.0.0.1:${ports.main}`)}
listen = ${tomlStr(`127.0.0.1:${ports.main}`)}
[storage]
url = ${tomlStr(`sqlite://${path.join(workDir, 'hubauth.db')}`)}
[metrics]
listen = ${tomlStr(`127.0.0.1:${ports.ops}`)}
token = ${tomlStr(SCRAPE_TOKEN)}
namespace = "e2e"
usage_interval = "1s"
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
groups = [${groups.map(tomlStr).join(', ')}]
`;
}

async function startBroker(name, groups) {
  hubauth = await startHubauthServe({
    name, dir: workDir, port: ports.main, toml: config(groups), env: { HUBAUTH_CRYPT_KEY: CRYPT_KEY },
  });
  await waitForHttp(`http://127.0.0.1:${ports.ops}/readyz`, { proc: hubauth.proc, timeoutMs: 15_000, what: 'hubauth /readyz' });
}

async function startPrometheus() {
  const dir = path.join(workDir, 'prometheus');
  mkdirSync(dir, { recursive: true });
  const yml = `global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: hubauth
    authorization:
      type: Bearer
      credentials: ${JSON.stringify(SCRAPE_TOKEN)}
    static_configs:
      - targets: ["127.0.0.1:${ports.ops}"]
`;
  const file = path.join(dir, 'prometheus.yml');
  writeFileSync(file, yml);
  const proc = startProcess(PROMETHEUS, [
    `--config.file=${file}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${ports.prometheus}`, '--log.level=warn',
  ], { logName: 'metrics-prometheus' });
  await waitForHttp(`http://127.0.0.1:${ports.prometheus}/-/ready`, { proc, timeoutMs: 20_000, what: 'prometheus' });
  return proc;
}

async function promApi(pathAndQuery) {
  const r = await fetch(`http://127.0.0.1:${ports.prometheus}${pathAndQuery}`, { signal: AbortSignal.timeout(5000) });
  const body = await r.json();
  assert.equal(body.status, 'success', `${pathAndQuery}: ${JSON.stringify(body)}`);
  return body.data;
}

/** An instant PromQL query's result vector. */
const query = (promql) => promApi(`/api/v1/query?query=${encodeURIComponent(promql)}`).then((d) => d.result);

/** Polls until `check()` returns a truthy value (then returns it), for at most `ms`. */
async function eventually(what, check, ms = 20_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last && (!Array.isArray(last) || last.length)) return last;
    await sleep(500);
  }
  assert.fail(`${what}: not seen within ${ms} ms (last: ${JSON.stringify(last)})`);
}

/** ada signs in through the login form and the hub client redeems the code; the token response. */
async function signInAda() {
  return signInAndRedeem({
    base: `http://127.0.0.1:${ports.main}`, clientId: 'hub', clientSecret: CLIENT_SECRET, redirectUri: REDIRECT,
    username: 'ada', password: PASSWORD,
  });
}

async function scrape() {
  const r = await fetch(`http://127.0.0.1:${ports.ops}/metrics`, {
    headers: { authorization: `Bearer ${SCRAPE_TOKEN}` }, signal: AbortSignal.timeout(5000),
  });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^application\/openmetrics-text/);
  return r.text();
}

// Both parsers of prometheus_client: the Prometheus text one the brief names, and the strict
// OpenMetrics one (which also checks # EOF, counter _total suffixes and the info type).
const PARSE = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families as text_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
text = sys.stdin.read()
def dump(families):
    return [{"name": f.name, "type": f.type, "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]} for f in families]
print(json.dumps({"text": dump(text_families(text)), "openmetrics": dump(om_families(text))}))
`;

async function parseWithPython(exposition) {
  const file = path.join(workDir, 'metrics.txt');
  writeFileSync(file, exposition);
  const { stdout } = await run('/bin/sh', ['-c', `"${PYTHON}" -c '${PARSE.replace(/'/g, "'\\''")}' < "${file}"`], { timeout: 20_000 });
  return JSON.parse(stdout);
}

describe('hubauth metrics and probes, scraped by a real Prometheus', { timeout: 90_000 }, () => {
  before(async () => {
    assert.ok(existsSync(PROMETHEUS), `${PROMETHEUS} missing (scripts/install-test-deps.sh installs Debian's prometheus)`);
    assert.ok(existsSync(PYTHON), `${PYTHON} missing (scripts/install-test-deps.sh makes the venv)`);
    workDir = tempDir('metrics');
    ports = { main: await freePort(), ops: await freePort(), prometheus: await freePort() };
    devHash = (await run(HUBAUTH_BIN, ['hash-password', '--password', PASSWORD])).stdout.trim();
    await startBroker('metrics-hubauth', ['admins']);
    prometheus = await startPrometheus();
  });

  after(async () => {
    await prometheus?.stop();
    await hubauth?.stop();
    if (workDir && !process.env.E2E_KEEP_TMP) rmSync(workDir, { recursive: true, force: true });
  });

  it('metrics are on the operations port only, behind the token; the probes answer there', async () => {
    const main = await browse(new CookieJar(), `http://127.0.0.1:${ports.main}/metrics`);
    assert.equal(main.status, 404, 'no /metrics on the public port with [metrics] listen set');
    const ops = (p, headers = {}) => fetch(`http://127.0.0.1:${ports.ops}${p}`, { headers, signal: AbortSignal.timeout(5000) });
    assert.equal((await ops('/metrics')).status, 401, 'the scrape token is required');
    const ready = await ops('/readyz');
    assert.equal(ready.status, 200);
    assert.equal(await ready.text(), 'ready');
    assert.equal((await ops('/healthz')).status, 200);
  });

  it('Prometheus scrapes it (target up) and its queries return the series after a sign-in', async () => {
    const target = await eventually('the hubauth target up', async () => {
      const { activeTargets } = await promApi('/api/v1/targets');
      return activeTargets.find((t) => t.labels.job === 'hubauth' && t.health === 'up');
    });
    assert.equal(target.scrapeUrl, `http://127.0.0.1:${ports.ops}/metrics`);
    assert.deepEqual(await query('up{job="hubauth"} == 1').then((r) => r.length), 1);

    await signInAda();
    const logins = await eventually('hubauth_logins_total for ada', () => query('hubauth_logins_total{connector="dev",outcome="admitted"}'));
    assert.equal(logins.length, 1);
    assert.equal(logins[0].value[1], '1');
    assert.equal(logins[0].metric.reason, 'open_policy');
    const grants = await eventually('the code grant', () => query('hubauth_token_grants_total{grant_type="authorization_code",result="ok"}'));
    assert.equal(grants[0].value[1], '1');
    const info = await eventually('ada in admins', () => query('hubauth_user_group_info{username="ada"}'));
    assert.equal(info.length, 1);
    const { __name__, namespace, usergroup, username, username_escaped, username_safe } = info[0].metric;
    assert.deepEqual({ __name__, namespace, usergroup, username, username_escaped, username_safe }, {
      __name__: 'hubauth_user_group_info', namespace: 'e2e', usergroup: 'admins', username: 'ada', username_escaped: 'ada', username_safe: 'ada',
    });
    const active = await eventually('an active user', () => query('hubauth_active_users{period="24h"} == 1'));
    assert.equal(active.length, 1);
    const sessions = await query('hubauth_active_browser_sessions');
    assert.equal(sessions[0].value[1], '1', 'ada\'s browser session');
  });

  it('every query of the Grafana dashboard (docs/grafana-hubauth.json) is valid PromQL for this Prometheus', async () => {
    const dashboard = JSON.parse(readFileSync(path.join(REPO_ROOT, 'docs', 'grafana-hubauth.json'), 'utf8'));
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => [p.title, t.expr]));
    assert.ok(exprs.length >= 10);
    const answered = {};
    for (const [title, expr] of exprs) {
      const promql = expr.replaceAll('$__rate_interval', '1m').replaceAll('$job', 'hubauth').replaceAll('$group', '.+');
      answered[title] = (answered[title] || 0) + (await query(promql)).length; // promApi asserts status success
    }
    writeFileSync(artifactPath('metrics-dashboard-queries.json'), JSON.stringify(answered, null, 2));
    for (const title of ['Users', 'Active users', 'Users per group', 'Members of the selected groups', 'Replicas up']) {
      assert.ok(answered[title] > 0, `dashboard panel "${title}" shows data`);
    }
  });

  it('the exposition parses with prometheus_client (text and OpenMetrics parsers)', async () => {
    const exposition = await scrape();
    writeFileSync(artifactPath('metrics-exposition.txt'), exposition);
    const parsed = await parseWithPython(exposition);
    writeFileSync(artifactPath('metrics-parsed.json'), JSON.stringify(parsed, null, 2));
    // Every sample reads back through both parsers, with its labels and value.
    for (const [parser, families] of Object.entries(parsed)) {
      const samples = families.flatMap((f) => f.samples);
      const one = (name, labels = {}) => samples.filter((s) => s.name === name
        && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      assert.equal(one('hubauth_logins_total', { connector: 'dev', outcome: 'admitted' })[0]?.value, 1, `${parser}: one admitted dev login`);
      assert.equal(one('hubauth_token_grants_total', { grant_type: 'authorization_code', result: 'ok' })[0]?.value, 1, `${parser}: the code grant`);
      assert.equal(one('hubauth_users')[0]?.value, 1, `${parser}: hubauth_users`);
      assert.equal(one('hubauth_active_users', { period: '30d' })[0]?.value, 1, `${parser}: hubauth_active_users`);
      assert.deepEqual(one('hubauth_user_group_info').map((s) => [s.labels.username, s.labels.usergroup, s.value]), [['ada', 'admins', 1]], `${parser}: the info series`);
    }
    // The types, as OpenMetrics defines them (the older text parser sees `_total` and `_info`
    // samples as families of unknown type of their own: that format names them differently).
    const type = (name) => parsed.openmetrics.find((f) => f.name === name)?.type;
    assert.equal(type('hubauth_logins'), 'counter');
    assert.equal(type('hubauth_token_grants'), 'counter');
    assert.equal(type('hubauth_users'), 'gauge');
    assert.equal(type('hubauth_active_browser_sessions'), 'gauge');
    assert.equal(type('hubauth_user_group'), 'info', 'OpenMetrics: an info family');
  });

  it('group info series follow memberships: ada moves from admins to staff', async () => {
    const { access_token: accessToken } = await signInAda();
    // A user last checked before the server's start (whole seconds) is re-checked: be a second older.
    await sleep(1100);
    await hubauth.stop();
    await startBroker('metrics-hubauth-2', ['staff']);
    // Users last checked before this server started are re-checked on their next request.
    const r = await fetch(`http://127.0.0.1:${ports.main}/userinfo`, {
      headers: { authorization: `Bearer ${accessToken}` }, signal: AbortSignal.timeout(10_000),
    });
    assert.equal(r.status, 200, await r.clone().text());
    assert.deepEqual((await r.json()).groups, ['staff']);
    const staff = await eventually('ada in staff', () => query('hubauth_user_group_info{username="ada",usergroup="staff"}'));
    assert.equal(staff.length, 1);
    await eventually('ada no longer in admins', async () => (await query('hubauth_user_group_info{usergroup="admins"}')).length === 0);
    const all = await query('hubauth_user_group_info');
    assert.deepEqual(all.map((s) => s.metric.usergroup), ['staff']);
  });
});
