// Peer OpenID provider for the hubauth benchmark: oidc-provider (v9) set up
// to do the same work as hubauth in bench/run.sh.
//
//   node peer/server.mjs --listen 127.0.0.1:5557
//
// Equivalence with the hubauth bench config:
//   * confidential client "bench-rs" (client_secret_basic), ID tokens RS256
//     (RSA 2048), code flow with PKCE S256, refresh tokens issued for
//     offline_access and rotated on every use (old one consumed; reuse
//     revokes the grant);
//   * scopes openid profile groups offline_access (offline_access is
//     dropped by oidc-provider without prompt=consent, so refresh tokens are
//     issued by issueRefreshToken instead, not bound to the session); the ID token carries the
//     scope claims (conformIdTokenClaims: false) and is issued again on every
//     refresh grant; /userinfo returns the same static claims;
//   * one user "bench" / "bench-password" behind a minimal login form (no
//     dev interactions); consent is implied by loadExistingGrant, so once the
//     browser session exists /authorize answers 303 with a code directly.
//
// Storage is an in-process Map adapter (see BenchMemoryAdapter below):
// oidc-provider's bundled MemoryAdapter is an LRU capped at 1,000 entries and
// recomputes Math.max over every token of a grant on each write, which would
// evict pre-minted codes and make the peer quadratic in this benchmark.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    listen: { type: 'string', default: '127.0.0.1:5557' },
  },
});
const [host, portStr] = args.listen.split(':');
const port = Number(portStr);
const issuer = `http://${host}:${port}`;

const REDIRECT_URI = 'http://127.0.0.1:9/cb';
const USERNAME = 'bench';
const PASSWORD = 'bench-password';
const PASSWORD_SHA = crypto.createHash('sha256').update(PASSWORD).digest();

const ACCOUNT_CLAIMS = {
  sub: USERNAME,
  name: 'Bench User',
  preferred_username: USERNAME,
  email: 'bench@example.org',
  email_verified: true,
  groups: ['students'],
};

// ---------------------------------------------------------------- storage
const store = new Map(); // key -> { payload, exp (ms epoch or Infinity) }
const grantIndex = new Map(); // grantId -> Set(key)
const uidIndex = new Map(); // session uid -> id
const userCodeIndex = new Map();
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken',
  'DeviceCode', 'BackchannelAuthenticationRequest']);

class BenchMemoryAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const exp = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(key, { payload, exp });
    if (this.model === 'Session' && payload.uid) uidIndex.set(payload.uid, id);
    if (payload.userCode) userCodeIndex.set(payload.userCode, id);
    if (GRANTABLE.has(this.model) && payload.grantId) {
      let set = grantIndex.get(payload.grantId);
      if (!set) { set = new Set(); grantIndex.set(payload.grantId, set); }
      set.add(key);
    }
  }

  async find(id) {
    if (id === undefined) return undefined;
    const key = this.key(id);
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.exp <= Date.now()) {
      this.#drop(key, entry.payload);
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) { return this.find(uidIndex.get(uid)); }

  async findByUserCode(userCode) { return this.find(userCodeIndex.get(userCode)); }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    const key = this.key(id);
    const entry = store.get(key);
    if (entry) this.#drop(key, entry.payload);
  }

  async revokeByGrantId(grantId) {
    const set = grantIndex.get(grantId);
    if (!set) return;
    for (const key of set) store.delete(key);
    grantIndex.delete(grantId);
  }

  #drop(key, payload) {
    store.delete(key);
    if (payload?.grantId) grantIndex.get(payload.grantId)?.delete(key);
    if (this.model === 'Session' && payload?.uid) uidIndex.delete(payload.uid);
  }
}

// Drop expired entries now and then so long runs don't grow without bound.
setInterval(() => {
  const now = Date.now();
  for (const [key, entry] of store) {
    if (entry.exp <= now) {
      store.delete(key);
      if (entry.payload?.grantId) grantIndex.get(entry.payload.grantId)?.delete(key);
    }
  }
}, 30_000).unref();

// ---------------------------------------------------------------- keys
function jwk(type, opts, extra) {
  const { privateKey } = crypto.generateKeyPairSync(type, opts);
  return { ...privateKey.export({ format: 'jwk' }), ...extra };
}
const jwks = {
  keys: [
    jwk('rsa', { modulusLength: 2048 }, { kid: 'rs-1', use: 'sig', alg: 'RS256' }),
    jwk('ec', { namedCurve: 'P-256' }, { kid: 'es-1', use: 'sig', alg: 'ES256' }),
  ],
};

// ---------------------------------------------------------------- provider
const provider = new Provider(issuer, {
  adapter: BenchMemoryAdapter,
  clients: [
    {
      client_id: 'bench-rs',
      client_secret: 'bench-secret-0123456789',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
    {
      client_id: 'bench-es',
      client_secret: 'bench-secret-0123456789',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks,
  routes: {
    authorization: '/authorize',
    token: '/token',
    userinfo: '/userinfo',
    jwks: '/jwks',
  },
  scopes: ['openid', 'offline_access', 'profile', 'groups', 'email'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    userinfo: { enabled: true },
    revocation: { enabled: true },
  },
  rotateRefreshToken: () => true,
  // oidc-provider drops offline_access unless prompt=consent is sent (which
  // would force a consent interaction on every /authorize). hubauth needs no
  // prompt=consent, so issue offline-style refresh tokens to the client
  // whenever it may use the refresh_token grant.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  async findAccount(ctx, sub) {
    if (sub !== USERNAME) return undefined;
    return { accountId: sub, async claims() { return { ...ACCOUNT_CLAIMS }; } };
  },
  // Consent is implied (hubauth's clients are pre-registered, no consent
  // screen): reuse the session's grant, or create one for what was asked.
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
    if (!grant) {
      grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
    }
    const wanted = (oidc.params.scope || 'openid').split(' ');
    const missing = wanted.filter((s) => !grant.getOIDCScope().split(' ').includes(s));
    if (!grantId || missing.length) {
      grant.addOIDCScope(wanted.join(' '));
      await grant.save();
    }
    return grant;
  },
  interactions: {
    url(ctx, interaction) { return `/interaction/${interaction.uid}`; },
  },
  ttl: {
    AuthorizationCode: 60,
    AccessToken: 3600,
    IdToken: 3600,
    RefreshToken: 30 * 24 * 3600,
    Session: 14 * 24 * 3600,
    Grant: 30 * 24 * 3600,
    Interaction: 3600,
  },
  renderError(ctx, out) {
    ctx.type = 'text/plain';
    ctx.body = `${out.error}: ${out.error_description}\n`;
  },
});
provider.proxy = false;
provider.on('server_error', (ctx, err) => console.error('server_error', err));

// ---------------------------------------------------------------- login UI
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

async function interaction(req, res) {
  try {
    const details = await provider.interactionDetails(req, res);
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><title>Sign in</title>
<form method="post" action="/interaction/${details.uid}">
<input name="username"><input name="password" type="password">
<button>Sign in</button></form>`);
      return;
    }
    const form = new URLSearchParams(await readBody(req));
    const ok = form.get('username') === USERNAME && crypto.timingSafeEqual(
      crypto.createHash('sha256').update(form.get('password') || '').digest(), PASSWORD_SHA,
    );
    if (!ok) {
      res.writeHead(401, { 'content-type': 'text/plain' });
      res.end('bad credentials\n');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: USERNAME } },
      { mergeWithLastSubmission: false });
  } catch (err) {
    res.writeHead(err instanceof errors.SessionNotFound ? 400 : 500, { 'content-type': 'text/plain' });
    res.end(`${err.message}\n`);
  }
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res);
  } else {
    callback(req, res);
  }
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.listen(port, host, () => {
  console.log(`oidc-provider ${issuer} ready`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
