// A real upstream OpenID provider for the `oidc` connector tests: oidc-provider v9 run as a child
// process (e2e/upstream/server.mjs) through the harness, so it is always killed.
//
//   const up = await startUpstream({ redirectUris: [`${hubauthIssuer}/callback/upstream`] });
//   up.issuer                      // http://127.0.0.1:PORT
//   await up.requests()            // what the relying party sent (codes/tokens/secrets redacted)
//   await up.restart({ jwks: generateJwks({ kid: 'k2' }) })   // same port, new signing key
//   await up.stop()
//
// startHubauthServe() runs `hubauth serve` on a config the test writes (oidcConnectorToml() gives
// the `[[connectors]]` entry for the upstream).
import { writeFileSync, rmSync } from 'node:fs';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import path from 'node:path';

import {
  startProcess, freePort, waitForHttp, tempDir, run, E2E_DIR, ARTIFACTS, HUBAUTH_BIN,
} from './harness.mjs';

export const UPSTREAM_CLIENT_ID = 'hubauth';

/** The upstream's people. Log in with the login name (any password works in devInteractions). */
export const UPSTREAM_ACCOUNTS = {
  alice: {
    preferred_username: 'alice',
    name: 'Alice Physicist',
    email: 'alice@uni.example',
    email_verified: true,
    groups: ['physics', 'hpc-users'],
    realm_access: { roles: ['hub-users', 'physics-lab'] },
  },
  bob: {
    preferred_username: 'bob',
    name: 'Bob Nogroups',
    email: 'bob@uni.example',
    email_verified: false,
    groups: [],
  },
};

/** A private JWKS with one signing key (`RS256` → RSA 2048, `ES256` → P-256). */
export function generateJwks({ alg = 'RS256', kid = `${alg.toLowerCase()}-${randomBytes(4).toString('hex')}` } = {}) {
  const { privateKey } = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' }] };
}

/**
 * Start oidc-provider on a free loopback port (or `port`).
 * Options: redirectUris (hubauth's callback URL(s)), clientSecret, tokenEndpointAuthMethod
 * ('client_secret_basic'), idTokenAlg ('RS256'; must match a key in jwks), accounts, jwks,
 * accessTokenTTL (s), conformIdTokenClaims (true: profile claims only via userinfo), name (log).
 */
export async function startUpstream(options = {}) {
  const opts = {
    name: 'upstream',
    clientSecret: randomBytes(24).toString('hex'),
    tokenEndpointAuthMethod: 'client_secret_basic',
    idTokenAlg: 'RS256',
    accounts: UPSTREAM_ACCOUNTS,
    accessTokenTTL: 60,
    conformIdTokenClaims: true,
    ...options,
  };
  if (!opts.redirectUris?.length) throw new Error('startUpstream: redirectUris is required');
  opts.port ??= await freePort();
  opts.jwks ??= generateJwks({ alg: opts.idTokenAlg });
  const dir = tempDir('upstream');
  let generation = 0;
  let proc;

  async function launch() {
    generation += 1;
    const cfgFile = path.join(dir, `upstream-${generation}.json`);
    writeFileSync(cfgFile, JSON.stringify({
      host: '127.0.0.1',
      port: opts.port,
      clients: [{
        client_id: UPSTREAM_CLIENT_ID,
        client_secret: opts.clientSecret,
        redirect_uris: opts.redirectUris,
        token_endpoint_auth_method: opts.tokenEndpointAuthMethod,
        id_token_signed_response_alg: opts.idTokenAlg,
      }],
      accounts: opts.accounts,
      jwks: opts.jwks,
      accessTokenTTL: opts.accessTokenTTL,
      conformIdTokenClaims: opts.conformIdTokenClaims,
    }), { mode: 0o600 });
    const logName = generation === 1 ? opts.name : `${opts.name}-${generation}`;
    proc = startProcess(process.execPath, [path.join(E2E_DIR, 'upstream', 'server.mjs'), cfgFile], {
      logName,
      cwd: E2E_DIR,
      env: { NODE_ENV: 'development', NO_COLOR: '1' },
    });
    try {
      await waitForHttp(`${up.issuer}/.well-known/openid-configuration`, { proc, timeoutMs: 30_000, what: 'upstream oidc-provider' });
    } catch (e) {
      await proc.stop();
      throw e;
    }
    up.proc = proc;
  }

  const up = {
    issuer: `http://127.0.0.1:${opts.port}`,
    port: opts.port,
    clientId: UPSTREAM_CLIENT_ID,
    get clientSecret() { return opts.clientSecret; },
    get jwks() { return opts.jwks; },
    /** kids of the current signing keys */
    get kids() { return opts.jwks.keys.map((k) => k.kid); },
    proc: undefined,
    /** Every request the upstream handled since start/restart/clearRequests (secrets redacted). */
    async requests() {
      const r = await fetch(`${up.issuer}/__e2e/requests`);
      return r.json();
    },
    async clearRequests() {
      await fetch(`${up.issuer}/__e2e/requests`, { method: 'DELETE' });
    },
    /** Replace error_description in the upstream's error redirects (null: stop). */
    async overrideErrorDescription(text) {
      await fetch(`${up.issuer}/__e2e/error-description`, text === null ? { method: 'DELETE' } : { method: 'PUT', body: text });
    },
    /** Stop and start again on the same port, e.g. with a new `jwks` (key rotation). */
    async restart(changes = {}) {
      await proc?.stop();
      Object.assign(opts, changes);
      await launch();
    },
    async stop() {
      await proc?.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await launch();
  return up;
}

/**
 * In a browser at the upstream's devInteractions login page: log in as `user` (any password),
 * then consent if asked. `screenshot(page, name)` is called on each page when given; fails the
 * test with where the page is when the login page does not come.
 */
export async function upstreamDevLogin(page, { user, issuer, screenshot, describe = async () => page.url() }) {
  const login = page.locator('input[name="login"]');
  await login.waitFor({ timeout: 30_000 }).catch(async () => {
    throw new Error(`expected the upstream's login page, at ${await describe()}`);
  });
  if (new URL(page.url()).origin !== issuer) throw new Error(`the login page is not the upstream's: ${page.url()}`);
  await login.fill(user);
  await page.fill('input[name="password"]', `${user}-any-password`);
  await screenshot?.(page, 'upstream-login');
  await page.locator('button[type="submit"]').click();
  const consent = page.locator('input[name="prompt"][value="consent"]');
  const outcome = await Promise.race([
    consent.waitFor({ state: 'attached', timeout: 20_000 }).then(() => 'consent', () => null),
    page.waitForURL((u) => !u.href.startsWith(issuer), { timeout: 20_000 }).then(() => 'left', () => null),
  ]);
  if (outcome === 'consent') {
    await screenshot?.(page, 'upstream-consent');
    await page.locator('form:has(input[name="prompt"][value="consent"]) button[type="submit"]').click();
  }
}

// ------------------------------------------------------------------ hubauth serve

/** A TOML string literal (JSON string escapes are valid TOML basic-string escapes). */
export const tomlStr = (s) => JSON.stringify(String(s));
export const tomlList = (xs) => `[${xs.map(tomlStr).join(', ')}]`;

/** `[[connectors]]` for the upstream (type = "oidc"); `extra` adds/overrides keys (raw TOML values). */
export function oidcConnectorToml(up, {
  id = 'upstream', name = 'University login', secretEnv = 'HUBAUTH_UPSTREAM_SECRET',
  scope = ['openid', 'profile', 'email', 'offline_access'],
  usernameClaim = 'preferred_username', groupsClaim = 'groups', extra = {},
} = {}) {
  const lines = [
    '[[connectors]]',
    'type = "oidc"',
    `id = ${tomlStr(id)}`,
    `name = ${tomlStr(name)}`,
    `issuer = ${tomlStr(up.issuer)}`,
    `client_id = ${tomlStr(up.clientId)}`,
    `client_secret = { env = ${tomlStr(secretEnv)} }`,
    `scope = ${tomlList(scope)}`,
    `username_claim = ${tomlStr(usernameClaim)}`,
    `groups_claim = ${tomlStr(groupsClaim)}`,
    ...Object.entries(extra).map(([k, v]) => `${k} = ${v}`),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * Run `hubauth serve --config DIR/hubauth.toml` on 127.0.0.1:port. `toml` is the whole config
 * file; it is checked with `hubauth check-config` first so a config error reads as one.
 * env: extra environment (secrets, HUBAUTH_CRYPT_KEY). Returns { issuer, proc, stop() }.
 */
export async function startHubauthServe({ name, dir, port, toml, env = {} }) {
  const configPath = path.join(dir, 'hubauth.toml');
  writeFileSync(configPath, toml, { mode: 0o600 });
  writeFileSync(path.join(ARTIFACTS, `${name}.toml`), toml);
  const fullEnv = {
    HUBAUTH_LOG: process.env.HUBAUTH_LOG || 'hubauth=debug,tower_http=info',
    RUST_LOG: process.env.RUST_LOG || 'info',
    RUST_BACKTRACE: '1',
    NO_COLOR: '1',
    ...env,
  };
  try {
    await run(HUBAUTH_BIN, ['check-config', '--config', configPath], { env: { ...process.env, ...fullEnv } });
  } catch (e) {
    throw new Error(`hubauth check-config rejected the test config ${configPath}:\n${e.message}`);
  }
  const proc = startProcess(HUBAUTH_BIN, ['serve', '--config', configPath], { logName: name, env: fullEnv });
  const issuer = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${issuer}/.well-known/openid-configuration`, { proc, timeoutMs: 30_000, what: 'hubauth serve' });
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return { issuer, configPath, proc, stop: () => proc.stop() };
}
