// A real upstream OpenID provider for hubauth's `oidc` connector tests: oidc-provider (v9) with its
// built-in development interactions (login page: any password; consent page; "[ Cancel ]" link →
// error=access_denied).
//
//   node upstream/server.mjs CONFIG.json
//
// CONFIG.json (written by e2e/lib/upstream-oidc.mjs):
//   { "host": "127.0.0.1", "port": 1234,
//     "clients": [ { client_id, client_secret, redirect_uris, token_endpoint_auth_method,
//                    id_token_signed_response_alg } ],
//     "accounts": { "alice": { "preferred_username": "alice", "groups": [...], ... } },
//     "jwks": { "keys": [ private JWKs with kid/alg/use ] },
//     "accessTokenTTL": 60, "conformIdTokenClaims": true }
//
// Test-only endpoints (not part of oidc-provider):
//   GET /__e2e/requests    every request oidc-provider handled (koa middleware, after it parsed
//                          the body), codes/tokens/secrets redacted; DELETE resets the list. The
//                          tests assert on what hubauth sent (PKCE S256, nonce, client
//                          authentication method, JWKS re-fetch after a key rotation).
//                          A refresh_token grant that rotated the refresh token (always, here)
//                          has `rotatedRefreshToken: true`.
//   PUT /__e2e/error-description   replace error_description in error redirects to the RP with
//                          the request body (DELETE: stop).
//   GET /__e2e/accounts/{id}       the account's current claims (404 if unknown).
//   PATCH /__e2e/accounts/{id}     JSON object merged into the account's claims, e.g.
//                          {"groups": ["hpc-users"]}: from then on userinfo, ID tokens and refresh
//                          grants see the change (the person's upstream group membership changed
//                          while they stay signed in). Answers the new claims.
//   POST /__e2e/accounts/{id}/end-session   the account's sign-in ends at the provider (an admin
//                          signs the person out everywhere): every grant of the account is
//                          destroyed with its access tokens, refresh tokens and authorization
//                          codes, and its browser sessions are destroyed. A relying party's next
//                          refresh_token grant then gets `invalid_grant`, userinfo with an old
//                          access token 401. Answers {"grants": n, "sessions": m} (404 if unknown).
import * as http from 'node:http';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://${cfg.host}:${cfg.port}`;

// ---------------------------------------------------------------- request log
const requests = [];
const SECRET_PARAMS = new Set(['code', 'code_verifier', 'refresh_token', 'client_secret', 'token', 'password']);

function redactParams(params) {
  const out = {};
  for (const [k, v] of params) out[k] = SECRET_PARAMS.has(k) ? `<redacted ${String(v).length} chars>` : v;
  return out;
}

function describeAuthorization(h) {
  if (!h) return null;
  const [scheme, value = ''] = h.split(' ');
  if (/^basic$/i.test(scheme)) {
    const decoded = Buffer.from(value, 'base64').toString();
    let user = decoded.slice(0, Math.max(0, decoded.indexOf(':')));
    try { user = decodeURIComponent(user); } catch { /* keep as sent */ }
    return { scheme: 'Basic', client_id: user };
  }
  return { scheme };
}

function record(ctx) {
  const url = new URL(ctx.url, issuer);
  const entry = {
    at: new Date().toISOString(),
    method: ctx.method,
    path: url.pathname,
    status: ctx.status,
    query: redactParams(url.searchParams),
    authorization: describeAuthorization(ctx.get('authorization')),
    contentType: ctx.get('content-type') || null,
  };
  const body = ctx.oidc?.body;
  if (ctx.method === 'POST' && body && typeof body === 'object') entry.form = redactParams(Object.entries(body));
  // a refresh_token grant that consumed the presented refresh token and issued a new one
  if (ctx.oidc?.entities?.RotatedRefreshToken) entry.rotatedRefreshToken = true;
  requests.push(entry);
  // one line per request in the log (e2e/artifacts/<name>.log)
  console.log(`[req] ${entry.method} ${entry.path} -> ${entry.status} ${JSON.stringify({ q: entry.query, f: entry.form, a: entry.authorization })}`);
}

// ---------------------------------------------------------------- provider
const accounts = cfg.accounts;

const provider = new Provider(issuer, {
  clients: cfg.clients.map((c) => ({
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
    ...c,
  })),
  jwks: cfg.jwks,
  // `groups` (and a Keycloak-style nested `realm_access.roles`) are claims of the `profile`
  // scope, so a relying party asking for "openid profile email offline_access" gets them.
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'groups', 'realm_access'],
    email: ['email', 'email_verified'],
  },
  // true (oidc-provider's default): the ID token of a code flow carries only sub and protocol
  // claims; profile/email/groups come from userinfo, so the RP must fetch and merge it.
  conformIdTokenClaims: cfg.conformIdTokenClaims ?? true,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    userinfo: { enabled: true },
    revocation: { enabled: true },
  },
  // oidc-provider drops offline_access unless prompt=consent is sent; issue refresh tokens to the
  // client whenever it may use the refresh_token grant, and rotate them on every use.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  async findAccount(ctx, sub) {
    const a = accounts[sub];
    if (!a) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, ...a };
      },
    };
  },
  ttl: {
    AccessToken: cfg.accessTokenTTL ?? 60,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Session: 3600,
    Grant: 24 * 3600,
    Interaction: 3600,
  },
  cookies: { keys: ['e2e-upstream-cookie-key-0123456789'] },
});
provider.proxy = false;
provider.on('server_error', (ctx, err) => console.error('[server_error]', err));
provider.on('grant.error', (ctx, err) => console.error(`[grant.error] ${err.error}: ${err.error_description}`));
provider.on('authorization.error', (ctx, err) => console.error(`[authorization.error] ${err.error}: ${err.error_description}`));
provider.on('userinfo.error', (ctx, err) => console.error(`[userinfo.error] ${err.error}: ${err.error_description}`));

// Test knob (PUT /__e2e/error-description): replace the error_description of error redirects
// to the relying party, e.g. with markup, to check how the RP renders upstream text.
let errorDescriptionOverride = null;

// Record every request after oidc-provider handled it (its parsed body is on ctx.oidc.body).
provider.use(async (ctx, next) => {
  try {
    await next();
    const loc = ctx.response.get('location');
    if (errorDescriptionOverride !== null && loc && ctx.status >= 300 && ctx.status < 400) {
      const u = new URL(loc, issuer);
      if (u.searchParams.get('error')) {
        u.searchParams.set('error_description', errorDescriptionOverride);
        ctx.set('location', u.href);
      }
    }
  } finally {
    record(ctx);
  }
});

// Grants and browser sessions per account, for POST /__e2e/accounts/{id}/end-session (the
// in-memory adapter keeps no index by account).
const grantsOf = new Map();
const sessionsOf = new Map();
const remember = (map, accountId, id) => {
  if (!accountId || !id) return;
  if (!map.has(accountId)) map.set(accountId, new Set());
  map.get(accountId).add(id);
};
provider.on('grant.saved', (grant) => remember(grantsOf, grant.accountId, grant.jti));
provider.on('session.saved', (session) => remember(sessionsOf, session.accountId, session.jti));

async function endSession(accountId) {
  const grants = [...(grantsOf.get(accountId) ?? [])];
  const sessions = [...(sessionsOf.get(accountId) ?? [])];
  for (const grantId of grants) {
    await Promise.all([
      provider.AccessToken.revokeByGrantId(grantId),
      provider.RefreshToken.revokeByGrantId(grantId),
      provider.AuthorizationCode.revokeByGrantId(grantId),
      provider.Grant.adapter.destroy(grantId),
    ]);
  }
  for (const sessionId of sessions) await provider.Session.adapter.destroy(sessionId);
  grantsOf.delete(accountId);
  sessionsOf.delete(accountId);
  console.log(`[e2e] account ${accountId}: sign-in ended (${grants.length} grant(s), ${sessions.length} session(s) destroyed)`);
  return { grants: grants.length, sessions: sessions.length };
}

const callback = provider.callback();

const ACCOUNT_PATH = /^\/__e2e\/accounts\/([^/?]+)$/;
const END_SESSION_PATH = /^\/__e2e\/accounts\/([^/?]+)\/end-session$/;

const server = http.createServer((req, res) => {
  const endMatch = END_SESSION_PATH.exec(req.url);
  if (endMatch) {
    const id = decodeURIComponent(endMatch[1]);
    req.resume();
    req.on('end', async () => {
      if (req.method !== 'POST') {
        res.writeHead(405, { allow: 'POST' });
        res.end();
        return;
      }
      if (!Object.hasOwn(accounts, id)) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: `no account ${id}` }));
        return;
      }
      try {
        const ended = await endSession(id);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(ended));
      } catch (e) {
        console.error('[e2e] end-session failed', e);
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: String(e) }));
      }
    });
    return;
  }
  const accountMatch = ACCOUNT_PATH.exec(req.url);
  if (accountMatch) {
    const id = decodeURIComponent(accountMatch[1]);
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (!Object.hasOwn(accounts, id)) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: `no account ${id}` }));
        return;
      }
      if (req.method === 'PATCH') {
        let patch;
        try { patch = JSON.parse(Buffer.concat(chunks).toString()); } catch { patch = null; }
        if (!patch || typeof patch !== 'object' || Array.isArray(patch)) {
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: 'body must be a JSON object' }));
          return;
        }
        accounts[id] = { ...accounts[id], ...patch };
        console.log(`[e2e] account ${id} changed: ${JSON.stringify(patch)}`);
      } else if (req.method !== 'GET') {
        res.writeHead(405, { allow: 'GET, PATCH' });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(accounts[id]));
    });
    return;
  }
  if (req.url === '/__e2e/error-description') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      errorDescriptionOverride = req.method === 'PUT' ? Buffer.concat(chunks).toString() : null;
      res.writeHead(204);
      res.end();
    });
    return;
  }
  if (req.url === '/__e2e/requests') {
    if (req.method === 'DELETE') requests.length = 0;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(requests));
    return;
  }
  callback(req, res);
});
server.listen(cfg.port, cfg.host, () => {
  console.log(`upstream oidc-provider ${issuer} ready (kids: ${cfg.jwks.keys.map((k) => k.kid).join(', ')})`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
