// The shipped systemd unit, contrib/systemd/hubauth.service, checked by systemd's own tools
// (Debian's `systemd` package; systemd need not be running: nothing here talks to PID 1):
//
//  1. `systemd-analyze verify` in a scratch root (--root): the unit as installed at
//     /etc/systemd/system, the distribution's units beside it (the targets it is ordered after) and
//     the binary at /usr/local/bin/hubauth, where ExecStart= expects it. Any complaint fails the
//     test — also the warnings (an unknown or misspelt key) that leave the exit status at 0. A
//     copy with a misspelt key shows that such a complaint is caught.
//  2. `systemd-analyze security --offline=true`: the overall exposure must be rated "OK" or
//     better, and docs/deployment.md must state the score this systemd gives.
//  3. The unit's own command lines (ExecStartPre=, ExecStart=) run with the real binary on a
//     scratch config: check-config passes, serve answers discovery.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, linkSync, mkdirSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { freePort, tempDir, startProcess, waitForHttp, HUBAUTH_BIN, REPO_ROOT } from './lib/harness.mjs';

const UNIT = path.join(REPO_ROOT, 'contrib', 'systemd', 'hubauth.service');
const ANALYZE = process.env.SYSTEMD_ANALYZE || '/usr/bin/systemd-analyze';
const DOCS = path.join(REPO_ROOT, 'docs', 'deployment.md');
const CLIENT_SECRET = 'systemd-test-secret-0123456789';

/** Runs a command; resolves { code, stdout, stderr } whatever the exit status. */
function sh(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60_000, maxBuffer: 10 * 1024 * 1024, ...opts }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** A scratch root with `unitText` installed as hubauth.service. */
function scratchRoot(unitText) {
  const root = tempDir('systemd-root');
  mkdirSync(path.join(root, 'etc/systemd/system'), { recursive: true });
  writeFileSync(path.join(root, 'etc/systemd/system/hubauth.service'), unitText);
  // The targets and slices it is ordered after / placed in come with systemd itself.
  mkdirSync(path.join(root, 'usr/lib/systemd'), { recursive: true });
  cpSync('/usr/lib/systemd/system', path.join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
  // The binary where ExecStart= names it (a hard link when possible: the debug build is large).
  mkdirSync(path.join(root, 'usr/local/bin'), { recursive: true });
  const bin = path.join(root, 'usr/local/bin/hubauth');
  try {
    linkSync(HUBAUTH_BIN, bin);
  } catch {
    copyFileSync(HUBAUTH_BIN, bin);
  }
  return root;
}

function verify(root) {
  return sh(ANALYZE, ['verify', '--man=no', `--root=${root}`, 'hubauth.service']);
}

/** The unit's `Key=value` lines of [Service]. */
function serviceLines(text, key) {
  return text.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
}


/** A scratch directory with a serve config on a free port (dev user ada / ada-demo). */
async function scratchConfig() {
  const dir = tempDir('systemd-cmd');
  const port = await freePort();
  const config = path.join(dir, 'hubauth.toml');
  writeFileSync(config, [
    `issuer = "http://127.0.0.1:${port}"`, `listen = "127.0.0.1:${port}"`,
    '[storage]', `url = "sqlite://${dir}/hubauth.db"`,
    '[[clients]]', 'id = "hub"', `secret = "${CLIENT_SECRET}"`, 'redirect_uris = ["http://127.0.0.1:9/cb"]',
    '[[connectors]]', 'type = "dev"', 'id = "dev"',
    '[[connectors.users]]', 'username = "ada"',
    // ada-demo, argon2id (the demo's own hash)
    'password_hash = "$argon2id$v=19$m=19456,t=2,p=1$lZDRSW74NNIaGjmKaZd3pg$l2+klVJ0MsDJsJyyLbkDICjI1AaUUIZVqh9wYxkgAoE"',
    '',
  ].join('\n'));
  return { dir, port, config };
}


describe('contrib/systemd/hubauth.service', () => {
  const roots = [];
  let unitText;
  before(() => {
    assert.ok(existsSync(ANALYZE), `${ANALYZE} is missing (Debian package systemd; scripts/install-test-deps.sh installs it)`);
    unitText = readFileSync(UNIT, 'utf8');
  });
  after(() => {
    if (process.env.E2E_KEEP_TMP !== '1') for (const r of roots) rmSync(r, { recursive: true, force: true });
  });

  it('passes systemd-analyze verify without a single complaint', async () => {
    const root = scratchRoot(unitText);
    roots.push(root);
    const r = await verify(root);
    assert.equal(r.code, 0, `systemd-analyze verify failed:\n${r.stdout}${r.stderr}`);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'systemd-analyze verify complained');
  });

  it('a misspelt key or a missing binary is a complaint the check above would see', async () => {
    const typo = scratchRoot(unitText.replace('ProtectSystem=strict', 'ProtectSystm=strict'));
    roots.push(typo);
    const r = await verify(typo);
    assert.match(`${r.stdout}${r.stderr}`, /Unknown key .*ProtectSystm/);
    const nobin = scratchRoot(unitText);
    roots.push(nobin);
    rmSync(path.join(nobin, 'usr/local/bin/hubauth'));
    const r2 = await verify(nobin);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /is not executable/);
  });

  it('is rated "OK" or better by systemd-analyze security, with the score docs/deployment.md gives', async () => {
    const r = await sh(ANALYZE, ['security', '--offline=true', '--no-pager', UNIT]);
    const m = /Overall exposure level for hubauth\.service: (\d+\.\d+) (\S+)/.exec(r.stdout);
    assert.ok(m, `no overall exposure level in:\n${r.stdout}${r.stderr}`);
    const [, score, rating] = m;
    console.log(`systemd-analyze security: ${score} ${rating}`);
    assert.ok(['SAFE', 'OK'].includes(rating), `rated ${score} ${rating}, worse than OK:\n${r.stdout}`);
    assert.equal(r.code, 0, r.stderr);
    const docs = readFileSync(DOCS, 'utf8');
    assert.ok(docs.includes('contrib/systemd/hubauth.service'), 'docs/deployment.md points at the shipped unit');
    const version = (await sh(ANALYZE, ['--version'])).stdout.split('\n')[0];
    assert.ok(
      docs.includes(`exposure level **${score} ${rating}**`),
      `docs/deployment.md must state the exposure "exposure level **${score} ${rating}**" (${version})`,
    );
  });

  it("runs its own ExecStartPre= and ExecStart= command lines", async () => {
    const [pre] = serviceLines(unitText, 'ExecStartPre');
    const [start] = serviceLines(unitText, 'ExecStart');
    assert.ok(pre && start, 'ExecStartPre= and ExecStart= are set');
    const { dir, port, config } = await scratchConfig();
    roots.push(dir);
    const argv = (line) => line.split(/\s+/).map((a) => (a === '/usr/local/bin/hubauth' ? HUBAUTH_BIN : a === '/etc/hubauth/hubauth.toml' ? config : a));
    const env = { ...process.env, HUBAUTH_CRYPT_KEY: '00'.repeat(32) };
    const [preCmd, ...preArgs] = argv(pre);
    const checked = await sh(preCmd, preArgs, { env });
    assert.equal(checked.code, 0, `ExecStartPre failed:\n${checked.stdout}${checked.stderr}`);
    const [cmd, ...args] = argv(start);
    const proc = startProcess(cmd, args, { logName: 'systemd-execstart', env });
    try {
      await waitForHttp(`http://127.0.0.1:${port}/.well-known/openid-configuration`, { proc, what: 'ExecStart=' });
    } finally {
      await proc.stop();
    }
  });
});
