// Fake upstream providers for the login-latency benchmark (bench/login/).
//
// Each fake is a plain node:http server on a loopback port that answers the public API of its
// provider — paths, parameters, JSON shapes, `Link` pagination and defaults as documented — for
// one realistic user, and that holds every answer to hubauth for RTT_MS after the request arrived
// ("50 ms per upstream round trip"). Requests the benchmark's "browser" makes (the authorize step,
// marked with the X-Bench-Browser header) are answered at once and not counted: that step is the
// person at the provider, not hubauth's work.
//
// Every request hubauth makes is recorded (method, path, query, arrival and answer time, which
// fake, whether it opened a new TCP connection) in `recorder`, so the driver can count requests
// per login, in-flight overlap and the length of the chain of sequential round trips.
//
//   oidc   Keycloak-style realm: discovery, JWKS, auth, token (client_secret_basic or _post,
//          PKCE S256 checked), userinfo; RS256 ID token with the authorize request's nonce.
//          Also serves the `oauth2` connector (same endpoints, no discovery, no `openid` scope).
//   google Google-style OpenID provider (Google's paths, client_secret_post, `hd` + verified
//          e-mail in the ID token) for the `google` connector with its `issuer` override.
//   github github.com: web host (/login/oauth/authorize, /login/oauth/access_token) and API host
//          (/user, /user/emails, /user/orgs, /user/memberships/orgs[/{org}], /user/teams,
//          /orgs/{org}/teams/{team}/memberships/{user}, and with an owner's token
//          /orgs/{org}/invitations[/{id}/teams]) as two servers, like github.com and
//          api.github.com. per_page default 30, max 100.
//   canvas Canvas LMS: /login/oauth2/auth, /login/oauth2/token, /api/v1/users/self[/profile],
//          /api/v1/courses, /api/v1/users/self/groups, /api/v1/users/self/enrollments,
//          /api/v1/users/self/courses (enrollment_state filter). per_page default 10, max 100.

import http from 'node:http';
import crypto from 'node:crypto';

// ------------------------------------------------------------------ recording

export const recorder = {
  /** Requests from hubauth, since the last reset(). */
  requests: [],
  /** Requests hubauth made that no fake knows (answered 404): listed in the report. */
  unknown: [],
  /** Current in-flight count and its maximum since reset(), per fake group. */
  inFlight: new Map(),
  maxInFlight: new Map(),
  /** What the driver is doing right now (authorize, login, provider, callback). */
  phase: 'idle',
  reset() {
    this.requests = [];
    this.maxInFlight = new Map();
  },
};

const now = () => performance.now();

// ------------------------------------------------------------------ helpers

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const token = (prefix = '') => prefix + crypto.randomBytes(24).toString('base64url');
const sha256b64url = (s) => crypto.createHash('sha256').update(s).digest('base64url');

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const json = (status, body, headers = {}) => ({
  status,
  headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  body: JSON.stringify(body),
});
const redirect = (location) => ({ status: 302, headers: { location }, body: '' });
const notFound = (body = { message: 'Not Found' }) => json(404, body);

/** Client credentials from HTTP Basic (RFC 6749 §2.3.1: form-encoded, then Basic) or the body. */
function clientCredentials(req, form) {
  const h = req.headers.authorization || '';
  if (h.toLowerCase().startsWith('basic ')) {
    const raw = Buffer.from(h.slice(6), 'base64').toString('utf8');
    const i = raw.indexOf(':');
    const dec = (s) => decodeURIComponent(s.replace(/\+/g, ' '));
    return { method: 'basic', id: dec(raw.slice(0, i)), secret: dec(raw.slice(i + 1)) };
  }
  if (form.get('client_id') && form.get('client_secret') !== null) {
    return { method: 'post', id: form.get('client_id'), secret: form.get('client_secret') };
  }
  return null;
}

function bearer(req) {
  const h = req.headers.authorization || '';
  const m = /^(?:bearer|token)\s+(.+)$/i.exec(h);
  return m ? m[1] : null;
}

/** Checks a code redemption: code known and unused, same client and redirect_uri, PKCE S256. */
function redeem(codes, code, form, clientId) {
  const grant = codes.get(code);
  if (!grant) return 'unknown or used code';
  codes.delete(code); // single use
  if (grant.expires < Date.now()) return 'code expired';
  if (grant.clientId !== clientId) return 'code was issued to another client';
  if (grant.redirectUri && grant.redirectUri !== form.get('redirect_uri')) return 'redirect_uri differs';
  if (grant.codeChallenge) {
    const v = form.get('code_verifier');
    if (!v) return 'code_verifier missing';
    if (sha256b64url(v) !== grant.codeChallenge) return 'PKCE verification failed';
  }
  return grant;
}

/** An authorize request from the browser: remember the grant, answer 302 to redirect_uri. */
function authorize(codes, url, { checkClient, requireResponseType = true }) {
  const q = url.searchParams;
  const clientId = q.get('client_id');
  const redirectUri = q.get('redirect_uri');
  if (!checkClient(clientId)) return json(400, { error: 'invalid_client', where: 'authorize' });
  if (!redirectUri) return json(400, { error: 'invalid_request', error_description: 'redirect_uri missing' });
  if (requireResponseType && q.get('response_type') !== 'code') {
    return json(400, { error: 'unsupported_response_type' });
  }
  const challenge = q.get('code_challenge');
  if (challenge && q.get('code_challenge_method') !== 'S256') {
    return json(400, { error: 'invalid_request', error_description: 'only S256' });
  }
  const code = token();
  codes.set(code, {
    clientId,
    redirectUri,
    codeChallenge: challenge,
    nonce: q.get('nonce'),
    scope: q.get('scope') || '',
    // bench/storm: which of many people the browser signs in as (see startOidc's `user`).
    benchUser: q.get('bench_user'),
    expires: Date.now() + 60_000,
  });
  const back = new URL(redirectUri);
  back.searchParams.set('code', code);
  if (q.get('state') !== null) back.searchParams.set('state', q.get('state'));
  return redirect(back.toString());
}

/**
 * A loopback server whose answers to hubauth leave RTT_MS after the request arrived.
 * handler(req, url, body) → { status, headers, body } (or a promise of one).
 */
function startServer(group, name, rttMs, handler) {
  const server = http.createServer(async (req, res) => {
    const arrived = now();
    const fromBrowser = req.headers['x-bench-browser'] === '1';
    const body = await readBody(req);
    const url = new URL(req.url, `http://${req.headers.host}`);
    let entry = null;
    if (!fromBrowser) {
      const n = (recorder.inFlight.get(group) || 0) + 1;
      recorder.inFlight.set(group, n);
      recorder.maxInFlight.set(group, Math.max(n, recorder.maxInFlight.get(group) || 0));
      entry = {
        group,
        server: name,
        method: req.method,
        path: url.pathname,
        query: url.search,
        phase: recorder.phase,
        start: arrived,
        end: null,
        status: null,
        newConnection: !req.socket.benchSeen,
      };
      req.socket.benchSeen = true;
      recorder.requests.push(entry);
    }
    let answer;
    try {
      answer = await handler(req, url, body);
    } catch (e) {
      answer = json(500, { error: 'server_error', error_description: String(e && e.stack || e) });
    }
    if (!fromBrowser) {
      const wait = arrived + rttMs - now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    res.writeHead(answer.status, answer.headers);
    res.end(answer.body);
    if (entry) {
      entry.end = now();
      entry.status = answer.status;
      if (answer.status === 404) recorder.unknown.push(`${name} ${req.method} ${url.pathname}${url.search}`);
      recorder.inFlight.set(group, recorder.inFlight.get(group) - 1);
    }
  });
  server.keepAliveTimeout = 120_000; // longer than hubauth's idle pool timeout
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, port: server.address().port }));
  });
}

// ------------------------------------------------------------------ OpenID Connect (Keycloak / Google)

/**
 * A Keycloak-like realm ({paths: 'keycloak'}) or Google-like provider ({paths: 'google'}).
 * clients: Map id → { secret, auth: 'basic' | 'post' | undefined (either), user (else `user`) }.
 * `user` may be a function of the browser's `bench_user` authorize parameter (many people, for
 * bench/storm). signAlg: 'RS256' (default) or 'ES256' (~20× cheaper to sign: a storm of ID tokens
 * then does not queue up in this one Node thread).
 */
export async function startOidc({ group, rttMs, clients, user, paths = 'keycloak', signAlg = 'RS256' }) {
  const { privateKey, publicKey } = signAlg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = crypto.createHash('sha256').update(publicKey.export({ format: 'der', type: 'spki' })).digest('base64url').slice(0, 16);
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg: signAlg };
  const codes = new Map();
  const accessTokens = new Map();
  let base = '';
  let issuer = '';
  const p = paths === 'google'
    ? { auth: '/o/oauth2/v2/auth', token: '/token', userinfo: '/v1/userinfo', jwks: '/oauth2/v3/certs', prefix: '' }
    : {
      auth: '/realms/bench/protocol/openid-connect/auth',
      token: '/realms/bench/protocol/openid-connect/token',
      userinfo: '/realms/bench/protocol/openid-connect/userinfo',
      jwks: '/realms/bench/protocol/openid-connect/certs',
      prefix: '/realms/bench',
    };

  const signJwt = (claims) => {
    const header = b64url(JSON.stringify({ alg: signAlg, typ: 'JWT', kid }));
    const payload = b64url(JSON.stringify(claims));
    // JWS wants ECDSA signatures as r || s, not DER.
    const sig = crypto.sign('sha256', Buffer.from(`${header}.${payload}`), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    return `${header}.${payload}.${b64url(sig)}`;
  };

  const handler = async (req, url, body) => {
    const path = url.pathname;
    if (req.method === 'GET' && path === `${p.prefix}/.well-known/openid-configuration`) {
      return json(200, {
        issuer,
        authorization_endpoint: base + p.auth,
        token_endpoint: base + p.token,
        userinfo_endpoint: base + p.userinfo,
        jwks_uri: base + p.jwks,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: [signAlg],
        scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
        code_challenge_methods_supported: ['S256'],
        grant_types_supported: ['authorization_code', 'refresh_token'],
        claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nonce', 'name', 'email', 'email_verified', 'preferred_username', 'groups'],
      }, { 'cache-control': 'public, max-age=3600' });
    }
    if (req.method === 'GET' && path === p.jwks) {
      return json(200, { keys: [jwk] }, { 'cache-control': 'public, max-age=3600' });
    }
    if (req.method === 'GET' && path === p.auth) {
      return authorize(codes, url, { checkClient: (id) => clients.has(id) });
    }
    if (req.method === 'POST' && path === p.token) {
      const form = new URLSearchParams(body);
      const cred = clientCredentials(req, form);
      const client = cred && clients.get(cred.id);
      if (!client || client.secret !== cred.secret || (client.auth && client.auth !== cred.method)) {
        return json(401, { error: 'invalid_client', error_description: 'client authentication failed' },
          { 'www-authenticate': 'Basic realm="bench"' });
      }
      if (form.get('grant_type') !== 'authorization_code') return json(400, { error: 'unsupported_grant_type' });
      const grant = redeem(codes, form.get('code'), form, cred.id);
      if (typeof grant === 'string') return json(400, { error: 'invalid_grant', error_description: grant });
      const access = token('at_');
      const scopes = grant.scope.split(' ').filter(Boolean);
      const who = client.user || (typeof user === 'function' ? user(grant.benchUser) : user);
      accessTokens.set(access, { clientId: cred.id, scopes, who });
      const t = Math.floor(Date.now() / 1000);
      const answer = {
        access_token: access,
        token_type: 'Bearer',
        expires_in: 300,
        refresh_token: token('rt_'),
        scope: grant.scope,
      };
      if (scopes.includes('openid')) {
        const atHash = crypto.createHash('sha256').update(access).digest().subarray(0, 16).toString('base64url');
        answer.id_token = signJwt({
          iss: issuer,
          sub: who.sub,
          aud: cred.id,
          azp: cred.id,
          exp: t + 300,
          iat: t,
          auth_time: t,
          nonce: grant.nonce || undefined,
          at_hash: atHash,
          ...who.idTokenClaims,
        });
      }
      return json(200, answer, { 'cache-control': 'no-store', pragma: 'no-cache' });
    }
    if (req.method === 'GET' && path === p.userinfo) {
      const at = bearer(req);
      if (!at || !accessTokens.has(at)) {
        return json(401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
      }
      const { who } = accessTokens.get(at);
      return json(200, { sub: who.sub, ...who.userinfoClaims });
    }
    return notFound({ error: 'not_found' });
  };

  const { server, port } = await startServer(group, group, rttMs, handler);
  base = `http://127.0.0.1:${port}`;
  issuer = base + p.prefix;
  return {
    server,
    issuer,
    authorizeUrl: base + p.auth,
    tokenUrl: base + p.token,
    userinfoUrl: base + p.userinfo,
  };
}

// ------------------------------------------------------------------ pagination (GitHub / Canvas)

/**
 * One page of `items` by `page` / `per_page` (clamped to 1..max, `def` when absent), and the
 * `Link` header the provider sends: GitHub lists next/last (and first/prev after page 1) with
 * ", " between; Canvas lists current/next/prev/first/last with "," between.
 */
function paginate(url, items, { def, max, style }) {
  const q = url.searchParams;
  let perPage = parseInt(q.get('per_page') || '', 10);
  if (!(perPage > 0)) perPage = def;
  perPage = Math.min(perPage, max);
  let page = parseInt(q.get('page') || '', 10);
  if (!(page > 0)) page = 1;
  const last = Math.max(1, Math.ceil(items.length / perPage));
  const slice = items.slice((page - 1) * perPage, page * perPage);
  const link = (n) => {
    const u = new URL(url);
    u.searchParams.set('page', String(n));
    u.searchParams.set('per_page', String(perPage));
    return `<${u.toString()}>`;
  };
  const rels = [];
  if (style === 'canvas') {
    rels.push(`${link(page)}; rel="current"`);
    if (page < last) rels.push(`${link(page + 1)}; rel="next"`);
    if (page > 1) rels.push(`${link(page - 1)}; rel="prev"`);
    rels.push(`${link(1)}; rel="first"`);
    rels.push(`${link(last)}; rel="last"`);
  } else {
    if (page > 1) rels.push(`${link(page - 1)}; rel="prev"`);
    if (page < last) rels.push(`${link(page + 1)}; rel="next"`);
    if (page < last) rels.push(`${link(last)}; rel="last"`);
    if (page > 1) rels.push(`${link(1)}; rel="first"`);
  }
  const headers = rels.length ? { link: rels.join(style === 'canvas' ? ',' : ', ') } : {};
  return { slice, headers, perPage, page, last };
}

// ------------------------------------------------------------------ GitHub

export const GITHUB_USER = {
  login: 'octo-bench',
  id: 5832310,
  name: 'Octo Bench',
  // org → 'active' | 'pending' (invited, not yet accepted)
  orgs: { 'bench-uni': 'active', 'bench-lab': 'active', 'bench-club': 'active' },
  // 8 teams of active memberships: [org, slug]
  teams: [
    ['bench-uni', 'students-2025'],
    ['bench-uni', 'physics'],
    ['bench-uni', 'hub-users'],
    ['bench-uni', 'tas'],
    ['bench-lab', 'researchers'],
    ['bench-lab', 'gpu-users'],
    ['bench-lab', 'admins'],
    ['bench-club', 'members'],
  ],
};

/**
 * Organizations' pending invitations, visible to an owner's token (`ownerToken`):
 * org → { others: how many invitations to other people, mine: teams the person's invitation adds }.
 */
export const GITHUB_INVITATIONS = {};

export async function startGithub({ group, rttMs, clientId, clientSecret, user = GITHUB_USER, invitations = GITHUB_INVITATIONS, ownerToken = null }) {
  const codes = new Map();
  const tokens = new Set();
  let web = '';
  let api = '';
  let remaining = 5000;
  const orgNames = [...new Set([...Object.keys(user.orgs), ...Object.keys(invitations)])];
  const orgIndex = (login) => orgNames.indexOf(login);
  const orgObj = (login, i = orgIndex(login)) => ({
    login,
    id: 9000 + i,
    node_id: `O_kgDO${b64url(login)}`,
    url: `${api}/orgs/${login}`,
    repos_url: `${api}/orgs/${login}/repos`,
    events_url: `${api}/orgs/${login}/events`,
    hooks_url: `${api}/orgs/${login}/hooks`,
    issues_url: `${api}/orgs/${login}/issues`,
    members_url: `${api}/orgs/${login}/members{/member}`,
    public_members_url: `${api}/orgs/${login}/public_members{/member}`,
    avatar_url: `https://avatars.githubusercontent.com/u/${9000 + i}?v=4`,
    description: `The ${login} organization`,
  });
  const userObj = () => ({
    login: user.login,
    id: user.id,
    node_id: 'MDQ6VXNlcjU4MzIzMTA=',
    avatar_url: `https://avatars.githubusercontent.com/u/${user.id}?v=4`,
    gravatar_id: '',
    url: `${api}/users/${user.login}`,
    html_url: `${web}/${user.login}`,
    type: 'User',
    site_admin: false,
  });
  const memberships = () => Object.entries(user.orgs).map(([org, state], i) => ({
    url: `${api}/orgs/${org}/memberships/${user.login}`,
    state,
    role: i === 1 ? 'admin' : 'member',
    organization_url: `${api}/orgs/${org}`,
    organization: orgObj(org),
    user: userObj(),
  }));
  const teamObj = ([org, slug], i) => ({
    id: 700 + i,
    node_id: `T_kwDO${b64url(slug)}`,
    url: `${api}/teams/${700 + i}`,
    html_url: `${web}/orgs/${org}/teams/${slug}`,
    name: slug.replace(/-/g, ' ').replace(/^./, (c) => c.toUpperCase()),
    slug,
    description: '',
    privacy: 'closed',
    notification_setting: 'notifications_enabled',
    permission: 'pull',
    members_url: `${api}/teams/${700 + i}/members{/member}`,
    repositories_url: `${api}/teams/${700 + i}/repos`,
    parent: null,
    members_count: 12,
    repos_count: 3,
    created_at: '2021-09-01T10:00:00Z',
    updated_at: '2024-09-01T10:00:00Z',
  });
  // /user/teams: full team objects with their organization.
  const teams = () => user.teams.map((t, i) => ({
    ...teamObj(t, i),
    organization: { ...orgObj(t[0]), name: t[0], type: 'Organization' },
  }));
  // GET /orgs/{org}/invitations: `others` invitations to other people, then the person's own.
  const invitationList = (org) => {
    const inv = invitations[org];
    if (!inv) return [];
    const out = Array.from({ length: inv.others }, (_, i) => ({
      id: 300_000 + orgIndex(org) * 1000 + i,
      node_id: `OI_kwDO${i}`,
      login: i % 3 ? `student-${org}-${i}` : null,
      email: i % 3 ? null : `student${i}@bench-uni.example`,
      role: 'direct_member',
      created_at: '2025-09-01T10:00:00Z',
      failed_at: null,
      failed_reason: null,
      inviter: { ...userObj(), login: 'bench-owner', id: 1001, node_id: 'MDQ6VXNlcjEwMDE=', url: `${api}/users/bench-owner`, html_url: `${web}/bench-owner` },
      team_count: 1,
      invitation_teams_url: `${api}/organizations/${9000 + orgIndex(org)}/invitations/${300_000 + orgIndex(org) * 1000 + i}/teams`,
      invitation_source: 'member',
    }));
    if (inv.mine) {
      const id = 399_000 + orgIndex(org);
      out.push({ ...out[0], id, node_id: 'OI_kwDOmine', login: user.login, email: null, team_count: inv.mine.length, invitation_teams_url: `${api}/organizations/${9000 + orgIndex(org)}/invitations/${id}/teams` });
    }
    return out;
  };
  const apiHeaders = () => {
    remaining -= 1;
    return {
      'x-ratelimit-limit': '5000',
      'x-ratelimit-remaining': String(Math.max(remaining, 4000)),
      'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + 3600),
      'x-ratelimit-used': String(5000 - Math.max(remaining, 4000)),
      'x-ratelimit-resource': 'core',
      'x-oauth-scopes': 'read:org, user:email',
      'x-accepted-oauth-scopes': '',
      'x-github-api-version-selected': '2022-11-28',
    };
  };
  const list = (url, items) => {
    const { slice, headers } = paginate(url, items, { def: 30, max: 100, style: 'github' });
    return json(200, slice, { ...apiHeaders(), ...headers });
  };

  const webHandler = async (req, url, body) => {
    if (req.method === 'GET' && url.pathname === '/login/oauth/authorize') {
      // GitHub needs no response_type; PKCE S256 is accepted and then checked.
      return authorize(codes, url, { checkClient: (id) => id === clientId, requireResponseType: false });
    }
    if (req.method === 'POST' && url.pathname === '/login/oauth/access_token') {
      const form = new URLSearchParams(body);
      const cred = clientCredentials(req, form);
      let answer;
      if (!cred || cred.id !== clientId || cred.secret !== clientSecret) {
        answer = { error: 'incorrect_client_credentials', error_description: 'The client_id and/or client_secret passed are incorrect.', error_uri: 'https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials' };
      } else {
        const grant = redeem(codes, form.get('code'), form, cred.id);
        if (typeof grant === 'string') {
          answer = { error: 'bad_verification_code', error_description: `The code passed is incorrect or expired. (${grant})`, error_uri: 'https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code' };
        } else {
          const t = token('gho_');
          tokens.add(t);
          answer = { access_token: t, token_type: 'bearer', scope: 'read:org,user:email' };
        }
      }
      // GitHub answers 200 even for errors, form-encoded unless JSON is asked for.
      if (/application\/json/.test(req.headers.accept || '')) return json(200, answer);
      return { status: 200, headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' }, body: new URLSearchParams(answer).toString() };
    }
    return { status: 404, headers: { 'content-type': 'text/html' }, body: 'Not Found' };
  };

  const apiHandler = async (req, url) => {
    const t = bearer(req);
    const p = url.pathname;
    if (t && t === ownerToken && req.method === 'GET') {
      // An owner's token: the organization's pending invitations (and only those, here).
      let m = /^\/orgs\/([^/]+)\/invitations$/.exec(p);
      if (m && orgNames.includes(m[1])) return list(url, invitationList(m[1]));
      m = /^\/orgs\/([^/]+)\/invitations\/(\d+)\/teams$/.exec(p);
      if (m && orgNames.includes(m[1])) {
        const found = invitationList(m[1]).find((i) => String(i.id) === m[2]);
        if (!found) return json(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
        const slugs = found.login === user.login ? invitations[m[1]].mine : [['x', 'newcomers']];
        return list(url, slugs.map((slug, i) => teamObj([m[1], Array.isArray(slug) ? slug[1] : slug], 50 + i)));
      }
      return json(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
    }
    if (!t || !tokens.has(t)) {
      return json(401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' });
    }
    if (req.method !== 'GET') return json(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
    if (p === '/user') {
      return json(200, {
        ...userObj(),
        name: user.name,
        company: '@bench-uni',
        blog: '',
        location: 'Benchville',
        email: null, // private e-mail: only /user/emails has it
        hireable: null,
        bio: null,
        twitter_username: null,
        public_repos: 12,
        public_gists: 1,
        followers: 5,
        following: 3,
        created_at: '2015-03-01T12:00:00Z',
        updated_at: '2025-01-01T12:00:00Z',
      }, apiHeaders());
    }
    if (p === '/user/emails') {
      return list(url, [
        { email: `${user.login}@bench-uni.example`, primary: true, verified: true, visibility: 'private' },
        { email: `${user.id}+${user.login}@users.noreply.github.com`, primary: false, verified: true, visibility: null },
      ]);
    }
    if (p === '/user/orgs') {
      return list(url, Object.entries(user.orgs).filter(([, st]) => st === 'active').map(([o]) => orgObj(o)));
    }
    if (p === '/user/memberships/orgs') {
      const state = url.searchParams.get('state');
      return list(url, memberships().filter((m) => !state || m.state === state));
    }
    let m = /^\/user\/memberships\/orgs\/([^/]+)$/.exec(p);
    if (m) {
      const found = memberships().find((x) => x.organization.login === m[1]);
      return found ? json(200, found, apiHeaders()) : json(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
    }
    if (p === '/user/teams') return list(url, teams());
    m = /^\/orgs\/([^/]+)\/teams\/([^/]+)\/memberships\/([^/]+)$/.exec(p);
    if (m) {
      const ok = m[3] === user.login && user.teams.some(([o, s]) => o === m[1] && s === m[2]);
      return ok
        ? json(200, { url: `${api}${p}`, role: 'member', state: 'active' }, apiHeaders())
        : json(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
    }
    m = /^\/orgs\/([^/]+)\/members\/([^/]+)$/.exec(p);
    if (m) {
      const ok = m[2] === user.login && user.orgs[m[1]] === 'active';
      return ok ? { status: 204, headers: apiHeaders(), body: '' } : json(404, { message: 'Not Found' });
    }
    return json(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
  };

  const w = await startServer(group, `${group}-web`, rttMs, webHandler);
  const a = await startServer(group, `${group}-api`, rttMs, apiHandler);
  web = `http://127.0.0.1:${w.port}`;
  api = `http://127.0.0.1:${a.port}`;
  return { servers: [w.server, a.server], webUrl: web, apiUrl: api };
}

// ------------------------------------------------------------------ Canvas

/** courses: how many enrollments in each state (`active`, `invited`, `completed`). */
export const CANVAS_USER = { id: 4242, name: 'Cam Canvas', login: 'ccanvas', courses: { active: 120 }, groups: 4 };

export async function startCanvas({ group, rttMs, clientId, clientSecret, user = CANVAS_USER }) {
  const codes = new Map();
  const tokens = new Set();
  let base = '';
  const term = { id: 17, name: 'Fall 2025', start_at: '2025-08-25T00:00:00Z', end_at: '2025-12-20T00:00:00Z', created_at: '2025-01-10T00:00:00Z', workflow_state: 'active', grading_period_group_id: null };
  const states = Object.entries(user.courses).flatMap(([state, n]) => Array(n).fill(state));
  const courses = states.map((state, i) => {
    const id = 10_000 + i;
    const teacher = i % 20 === 0;
    return {
      id,
      name: `Course ${i + 1}: Topics in Benchmarking`,
      account_id: 1,
      uuid: crypto.createHash('sha1').update(String(id)).digest('hex').slice(0, 40),
      start_at: null,
      grading_standard_id: null,
      is_public: false,
      created_at: '2025-06-01T00:00:00Z',
      course_code: `BENCH-${100 + i}`,
      default_view: 'modules',
      root_account_id: 1,
      enrollment_term_id: term.id,
      license: 'private',
      grade_passback_setting: null,
      end_at: null,
      public_syllabus: false,
      public_syllabus_to_auth: false,
      storage_quota_mb: 500,
      is_public_to_auth_users: false,
      homeroom_course: false,
      course_color: null,
      friendly_name: null,
      apply_assignment_group_weights: false,
      calendar: { ics: `${base}/feeds/calendars/course_${id}.ics` },
      time_zone: 'America/Denver',
      blueprint: false,
      template: false,
      sis_course_id: `2025FA-BENCH-${100 + i}`,
      integration_id: null,
      enrollments: [{
        type: teacher ? 'teacher' : 'student',
        role: teacher ? 'TeacherEnrollment' : 'StudentEnrollment',
        role_id: teacher ? 4 : 3,
        user_id: user.id,
        enrollment_state: state,
        limit_privileges_to_course_section: false,
      }],
      hide_final_grades: false,
      workflow_state: 'available',
      restrict_enrollments_to_course_dates: false,
    };
  });
  const groups = Array.from({ length: user.groups }, (_, i) => ({
    id: 500 + i,
    name: `Project group ${i + 1}`,
    created_at: '2025-09-01T00:00:00Z',
    max_membership: null,
    is_public: false,
    join_level: 'invitation_only',
    group_category_id: 60 + i,
    description: null,
    members_count: 4,
    storage_quota_mb: 50,
    context_type: 'Course',
    course_id: 10_000 + i * 7,
    avatar_url: null,
    role: null,
    leader: null,
    sis_group_id: null,
    sis_import_id: null,
    concluded: false,
  }));
  const rateHeaders = () => ({
    'x-rate-limit-remaining': '699.99',
    'x-request-cost': '0.0123',
    'x-canvas-meta': 'q=1;',
  });
  const list = (url, items) => {
    const { slice, headers } = paginate(url, items, { def: 10, max: 100, style: 'canvas' });
    return json(200, slice, { ...rateHeaders(), ...headers });
  };
  const withTerm = (url, c) => {
    const include = url.searchParams.getAll('include[]');
    return include.includes('term') ? { ...c, term } : c;
  };

  const handler = async (req, url, body) => {
    const p = url.pathname;
    if (req.method === 'GET' && p === '/login/oauth2/auth') {
      return authorize(codes, url, { checkClient: (id) => id === clientId });
    }
    if (req.method === 'POST' && p === '/login/oauth2/token') {
      const form = new URLSearchParams(body);
      const cred = clientCredentials(req, form);
      if (!cred || cred.id !== clientId || cred.secret !== clientSecret) {
        return json(401, { error: 'invalid_client', error_description: 'unknown client' });
      }
      if (form.get('grant_type') !== 'authorization_code') return json(400, { error: 'unsupported_grant_type' });
      const grant = redeem(codes, form.get('code'), form, cred.id);
      if (typeof grant === 'string') return json(400, { error: 'invalid_grant', error_description: grant });
      const t = `1~${token()}`;
      tokens.add(t);
      return json(200, {
        access_token: t,
        token_type: 'Bearer',
        user: { id: user.id, name: user.name, global_id: `10000000${user.id}`, effective_locale: 'en' },
        canvas_region: 'none',
        refresh_token: `1~${token()}`,
        expires_in: 3600,
      });
    }
    if (!p.startsWith('/api/v1/')) return { status: 404, headers: { 'content-type': 'text/html' }, body: 'Not Found' };
    const t = bearer(req);
    if (!t || !tokens.has(t)) {
      return json(401, { errors: [{ message: 'Invalid access token.' }] }, { 'www-authenticate': 'Bearer realm="canvas-lms"' });
    }
    if (req.method !== 'GET') return json(404, { errors: [{ message: 'The specified resource does not exist.' }] });
    if (p === '/api/v1/users/self/profile') {
      return json(200, {
        id: user.id,
        name: user.name,
        short_name: user.name.split(' ')[0],
        sortable_name: user.name.split(' ').reverse().join(', '),
        title: null,
        bio: null,
        pronunciation: null,
        primary_email: `${user.login}@bench-uni.example`,
        login_id: user.login,
        integration_id: null,
        time_zone: 'America/Denver',
        locale: null,
        effective_locale: 'en',
        calendar: { ics: `${base}/feeds/calendars/user_x.ics` },
        lti_user_id: 'a1b2c3d4e5f6',
        avatar_url: `${base}/images/messages/avatar-50.png`,
        pronouns: null,
      }, rateHeaders());
    }
    if (p === '/api/v1/users/self') {
      return json(200, {
        id: user.id,
        name: user.name,
        created_at: '2019-08-01T00:00:00Z',
        sortable_name: user.name.split(' ').reverse().join(', '),
        short_name: user.name.split(' ')[0],
        avatar_url: `${base}/images/messages/avatar-50.png`,
        locale: null,
        effective_locale: 'en',
        permissions: { can_update_name: true, can_update_avatar: false, limit_parent_app_web_access: false },
      }, rateHeaders());
    }
    if (p === '/api/v1/courses' || p === '/api/v1/users/self/courses') {
      // enrollment_state: active | invited_or_pending | completed; without it, current and invited.
      const want = url.searchParams.get('enrollment_state');
      const match = {
        active: ['active'],
        invited_or_pending: ['invited', 'creation_pending'],
        completed: ['completed'],
      }[want] || ['active', 'invited'];
      const picked = courses.filter((c) => match.includes(c.enrollments[0].enrollment_state));
      return list(url, picked.map((c) => withTerm(url, c)));
    }
    if (p === '/api/v1/users/self/groups') return list(url, groups);
    if (p === '/api/v1/users/self/enrollments') {
      return list(url, courses.map((c, i) => ({
        id: 80_000 + i,
        course_id: c.id,
        course_section_id: 90_000 + i,
        root_account_id: 1,
        type: c.enrollments[0].role,
        user_id: user.id,
        role: c.enrollments[0].role,
        role_id: c.enrollments[0].role_id,
        enrollment_state: c.enrollments[0].enrollment_state,
        sis_course_id: c.sis_course_id,
        html_url: `${base}/courses/${c.id}/users/${user.id}`,
      })));
    }
    return json(404, { errors: [{ message: 'The specified resource does not exist.' }] });
  };

  const s = await startServer(group, group, rttMs, handler);
  base = `http://127.0.0.1:${s.port}`;
  for (const c of courses) c.calendar.ics = `${base}/feeds/calendars/course_${c.id}.ics`;
  return { server: s.server, url: base };
}
