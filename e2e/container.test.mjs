// The container image (Containerfile): built with podman from registry-free base images
// (e2e/container/bases.sh: debootstrap'ed Debian bookworm), then run from a /data volume:
// it answers OIDC discovery, a person signs in through its port (authorization-code flow) while
// the server runs as a non-root user, `hubauth healthcheck` works inside it (and as the image's
// HEALTHCHECK), and a restart with the same volume keeps the signing keys (same JWKS).
//
// podman runs with Debian's runc and a containers.conf without default ulimits or a pids limit
// (crun cannot set rlimits in this CI's sandbox). The build's cargo registry and target dir are
// buildah cache mounts, so a rebuild after a source change recompiles hubauth only.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPO_ROOT, ARTIFACTS, run, freePort, waitForHttp, tempDir, signInAndRedeem, DEMO_USERS } from './lib/harness.mjs';

const IMAGE = 'localhost/hubauth:e2e';
const BUILDER = 'localhost/hubauth-builder-base:bookworm';
const RUNTIME = 'localhost/hubauth-runtime-base:bookworm';
const SIZE_LIMIT = 40 * 1000 * 1000;
const tag = randomBytes(4).toString('hex');
const NAME = `hubauth-e2e-${tag}`;
const VOLUME = `hubauth-e2e-data-${tag}`;

const confDir = tempDir('containers-conf');
const env = { ...process.env, CONTAINERS_CONF: path.join(confDir, 'containers.conf') };
writeFileSync(env.CONTAINERS_CONF, '[containers]\ndefault_ulimits = []\npids_limit = 0\n');
const RUNTIME_FLAGS = ['--runtime', '/usr/bin/runc'];

const podman = (args, opts = {}) => run('podman', [...RUNTIME_FLAGS, ...args], { env, ...opts });

let port;
let issuer;
let imageSize;

async function startContainer() {
  await podman([
    'run', '-d', '--name', NAME, '-p', `127.0.0.1:${port}:5556`, '-v', `${VOLUME}:/data`,
    '-e', 'HUBAUTH_CONFIG=/data/hubauth.toml', '--read-only', '--cap-drop=all', '--security-opt', 'no-new-privileges',
    IMAGE, 'demo', '--listen', '0.0.0.0:5556', '--data-dir', '/data', '--issuer', issuer,
  ]);
  try {
    await waitForHttp(`${issuer}/.well-known/openid-configuration`, { timeoutMs: 30_000, what: 'hubauth in the container' });
  } catch (e) {
    const { stdout, stderr } = await podman(['logs', NAME]).catch((x) => ({ stdout: '', stderr: x.message }));
    throw new Error(`${e.message}\ncontainer log:\n${stdout}${stderr}`);
  }
}

async function stopContainer() {
  const logs = await podman(['logs', NAME]).catch(() => null);
  if (logs) writeFileSync(path.join(ARTIFACTS, `container-${NAME}.log`), logs.stdout + logs.stderr, { flag: 'a' });
  await podman(['rm', '-f', '-t', '5', NAME]).catch(() => {});
}

async function jwks() {
  const r = await fetch(`${issuer}/jwks`, { signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 200);
  return r.json();
}

describe('container image', () => {
  before(async () => {
    const started = Date.now();
    await run('bash', [path.join(REPO_ROOT, 'e2e/container/bases.sh')], { env, timeout: 900_000 });
    const bases = Date.now();
    // --format docker keeps HEALTHCHECK (the OCI image format has no field for it).
    await podman([
      'build', '--format', 'docker', '--network', 'host', '-f', path.join(REPO_ROOT, 'Containerfile'),
      '--build-arg', `BUILDER_IMAGE=${BUILDER}`, '--build-arg', `RUNTIME_IMAGE=${RUNTIME}`,
      '-t', IMAGE, REPO_ROOT,
    ], { timeout: 1_500_000, maxBuffer: 64 * 1024 * 1024 });
    const built = Date.now();
    imageSize = Number((await podman(['image', 'inspect', '--format', '{{.Size}}', IMAGE])).stdout.trim());
    writeFileSync(path.join(ARTIFACTS, 'container-image.txt'),
      `image ${IMAGE}: ${imageSize} bytes (${(imageSize / 1e6).toFixed(1)} MB)\n` +
      `base images: ${((bases - started) / 1000).toFixed(0)} s, podman build: ${((built - bases) / 1000).toFixed(0)} s\n`);
    await podman(['volume', 'create', VOLUME]);
    port = await freePort();
    issuer = `http://127.0.0.1:${port}`;
    await startContainer();
  });

  after(async () => {
    await stopContainer();
    await podman(['volume', 'rm', '-f', VOLUME]).catch(() => {});
    rmSync(confDir, { recursive: true, force: true });
  });

  it(`the runtime image is at most ${SIZE_LIMIT / 1e6} MB`, () => {
    assert.ok(imageSize > 1e6 && imageSize <= SIZE_LIMIT, `image size ${imageSize} bytes`);
  });

  it('answers OIDC discovery on the published port', async () => {
    const r = await fetch(`${issuer}/.well-known/openid-configuration`);
    assert.equal(r.status, 200);
    const doc = await r.json();
    assert.equal(doc.issuer, issuer);
    assert.equal(doc.jwks_uri, `${issuer}/jwks`);
  });

  it('runs as the non-root user 65532, and a login goes through it', async () => {
    const user = (await podman(['inspect', '--format', '{{.Config.User}}', IMAGE])).stdout.trim();
    assert.equal(user, '65532:65532');
    // The server process itself, seen from the host: its real, effective and saved uids.
    const pid = (await podman(['inspect', '--format', '{{.State.Pid}}', NAME])).stdout.trim();
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const uids = status.match(/^Uid:\s+(.*)$/m)[1].trim().split(/\s+/);
    assert.deepEqual(uids, ['65532', '65532', '65532', '65532']);
    // The data volume is written by that user.
    const mount = (await podman(['volume', 'inspect', '--format', '{{.Mountpoint}}', VOLUME])).stdout.trim();
    assert.equal(statSync(path.join(mount, 'hubauth.toml')).uid, 65532);
    const secret = readFileSync(path.join(mount, 'jupyterhub-client-secret'), 'utf8').trim();
    const tokens = await signInAndRedeem({
      base: issuer, clientId: 'jupyterhub', clientSecret: secret,
      redirectUri: 'http://127.0.0.1:8000/hub/oauth_callback', username: 'ada', password: DEMO_USERS.ada.password,
    });
    assert.ok(tokens.id_token, 'an ID token');
    const claims = JSON.parse(Buffer.from(tokens.id_token.split('.')[1], 'base64url'));
    assert.equal(claims.iss, issuer);
    assert.equal(claims.preferred_username, 'ada');
  });

  it('`hubauth healthcheck` works inside the container (and as its HEALTHCHECK)', async () => {
    const ok = await podman(['exec', NAME, '/usr/local/bin/hubauth', 'healthcheck']);
    assert.match(ok.stdout, /^healthy: http:\/\/127\.0\.0\.1:5556\/healthz answered 200/);
    const byUrl = await podman(['exec', NAME, '/usr/local/bin/hubauth', 'healthcheck', '--url', 'http://127.0.0.1:5556/healthz']);
    assert.match(byUrl.stdout, /^healthy:/);
    // Nothing listens there: exit 1 and one line on stderr saying why.
    const bad = await podman(['exec', NAME, '/usr/local/bin/hubauth', 'healthcheck', '--url', 'http://127.0.0.1:1/healthz', '--timeout', '2'])
      .then(() => null, (e) => e);
    assert.ok(bad, 'healthcheck of a dead address must fail');
    assert.equal(bad.code, 1);
    assert.match(bad.message, /stderr: error: unhealthy: cannot reach http:\/\/127\.0\.0\.1:1\/healthz: .+\n?$/);
    const hc = (await podman(['inspect', '--format', '{{json .HealthCheck.Test}}', IMAGE])).stdout.trim();
    assert.deepEqual(JSON.parse(hc), ['CMD', '/usr/local/bin/hubauth', 'healthcheck']);
    const run = await podman(['healthcheck', 'run', NAME]).then(() => 'healthy', (e) => e.message);
    assert.equal(run, 'healthy');
  });

  it('keeps the signing keys across a restart with the same /data volume', async () => {
    const before = await jwks();
    assert.ok(before.keys.length >= 1);
    await stopContainer();
    await sleep(200);
    await startContainer();
    assert.deepEqual(await jwks(), before);
  });
});
