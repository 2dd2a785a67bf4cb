// A fake GitHub (github.com OAuth app + REST API v3) for hubauth's `github` connector, in the test's
// own Node process. Shapes follow GitHub's documentation and hubauth's Rust fake
// (tests/integration/fakes/github.rs):
//
// Browser-facing (github_url):
//   GET  /login/oauth/authorize     auto-approves for the account the "browser" is signed in as
//                                   (actAs(login)): 302 to redirect_uri with code + state. Checks
//                                   client_id, the registered callback URL, PKCE method S256.
//   POST /login/oauth/access_token  client_id + client_secret in the body, code, redirect_uri,
//                                   code_verifier (checked against the S256 challenge). JSON only
//                                   with `Accept: application/json`, else form-encoded. Refusals
//                                   are 200 with `error` (bad_verification_code, …) as on GitHub.
// REST API (api_url = {base}/api/v3, GitHub Enterprise Server layout):
//   GET /user, /user/emails, /user/memberships/orgs (?state=), /user/teams       (person's token)
//   GET /orgs/{org}/invitations, /orgs/{org}/invitations/{id}/teams             (org credential)
//   `per_page` (default 30, max 100 — or the lower `maxPerPage` given at start, so tests exercise
//   pagination with few items) and `page`, GitHub-style `Link` (prev/next/last/first);
//   X-RateLimit-{Limit,Remaining,Used,Reset,Resource} and X-OAuth-Scopes on every answer;
//   401 {"message":"Bad credentials"} for unknown tokens.
//
//   const gh = await startGithubFake({ clientId, clientSecret, callbackUrl, users, invitations,
//                                      orgCredentials: { TOKEN: ['carpentries'] }, maxPerPage: 2 });
//   gh.base, gh.apiUrl; gh.actAs('penny'); const m = gh.mark(); …; gh.apiRequests('/user', m);
//   await gh.close();
import {
  startFakeServer, paginate, s256, randomToken, sendJson, sendHtml, redirect,
} from './common.mjs';

export const API_PREFIX = '/api/v3';

const orgJson = (org) => ({
  login: org,
  id: [...org].reduce((a, c) => a + c.charCodeAt(0), 9000),
  node_id: `O_${org}`,
  url: `https://api.github.com/orgs/${org}`,
  repos_url: `https://api.github.com/orgs/${org}/repos`,
  avatar_url: 'https://avatars.githubusercontent.com/u/1?v=4',
  description: null,
});

const teamJson = (org, slug, name, id) => ({
  id,
  node_id: `T_${slug}`,
  url: `https://api.github.com/teams/${id}`,
  html_url: `https://github.com/orgs/${org ?? 'org'}/teams/${slug}`,
  name,
  slug,
  description: null,
  privacy: 'closed',
  notification_setting: 'notifications_enabled',
  permission: 'pull',
  parent: null,
  ...(org ? { organization: orgJson(org) } : {}),
});

function oauthError(error, description) {
  return {
    error,
    error_description: description,
    error_uri: 'https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors',
  };
}

/**
 * users: [{ id, login, name, publicEmail, emails: [{email, primary, verified}],
 *           orgs: [{org, state: 'active'|'pending', role}], teams: [{org, slug, name}] }]
 * invitations: [{ id, org, login|null, email|null, role: 'direct_member', teams: [{slug, name}] }]
 */
export async function startGithubFake({
  clientId, clientSecret, callbackUrl, users = [], invitations = [], orgCredentials = {}, maxPerPage = 100,
}) {
  const accounts = new Map(users.map((u) => [u.login, u]));
  const codes = new Map();
  const tokens = new Map(); // access token → { login, scope }
  let signedInAs = null;
  let rateRemaining = 5000;
  let fake;

  function tokenAnswer(req, res, body) {
    if (String(req.headers.accept || '').includes('application/json')) return sendJson(res, 200, body);
    res.writeHead(200, { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' });
    res.end(new URLSearchParams(Object.entries(body).map(([k, v]) => [k, String(v)])).toString());
  }

  function authorize(req, res, query) {
    if (query.get('client_id') !== clientId) {
      return sendHtml(res, 404, '<h1>Not Found</h1><p>No OAuth application with this client_id.</p>');
    }
    const redirectUri = query.get('redirect_uri') ?? callbackUrl;
    if (redirectUri !== callbackUrl) {
      const u = new URL(callbackUrl);
      u.searchParams.set('error', 'redirect_uri_mismatch');
      u.searchParams.set('error_description', 'The redirect_uri MUST match the registered callback URL for this application.');
      if (query.get('state')) u.searchParams.set('state', query.get('state'));
      return redirect(res, u.href);
    }
    const challenge = query.get('code_challenge');
    if (challenge && query.get('code_challenge_method') !== 'S256') {
      return sendHtml(res, 400, '<h1>Only S256 code challenges are supported</h1>');
    }
    if (!signedInAs || !accounts.has(signedInAs)) {
      return sendHtml(res, 200, '<h1>Sign in to GitHub</h1><p>(fake: call actAs(login) first)</p>');
    }
    const code = randomToken();
    codes.set(code, { login: signedInAs, challenge, redirectUri, scope: query.get('scope') ?? '' });
    const back = new URL(redirectUri);
    back.searchParams.set('code', code);
    if (query.get('state') !== null) back.searchParams.set('state', query.get('state'));
    return redirect(res, back.href);
  }

  function accessToken(req, res, form) {
    if (form.get('client_id') !== clientId || form.get('client_secret') !== clientSecret) {
      return tokenAnswer(req, res, oauthError('incorrect_client_credentials', 'The client_id and/or client_secret passed are incorrect.'));
    }
    const code = codes.get(form.get('code') ?? '');
    codes.delete(form.get('code') ?? '');
    if (!code) return tokenAnswer(req, res, oauthError('bad_verification_code', 'The code passed is incorrect or expired.'));
    if (form.has('redirect_uri') && form.get('redirect_uri') !== code.redirectUri) {
      return tokenAnswer(req, res, oauthError('redirect_uri_mismatch', 'The redirect_uri MUST match the registered callback URL for this application.'));
    }
    if (code.challenge && s256(form.get('code_verifier') ?? '') !== code.challenge) {
      return tokenAnswer(req, res, oauthError('bad_verification_code', 'The code_verifier does not match the challenge.'));
    }
    const access = randomToken('gho_');
    tokens.set(access, { login: code.login, scope: code.scope });
    return tokenAnswer(req, res, { access_token: access, token_type: 'bearer', scope: code.scope.replace(/ /g, ',') });
  }

  function api(req, res, apiPath, query) {
    const rateHeaders = () => {
      rateRemaining = Math.max(rateRemaining - 1, 0);
      return {
        'x-ratelimit-limit': '5000',
        'x-ratelimit-remaining': String(rateRemaining),
        'x-ratelimit-used': String(5000 - rateRemaining),
        'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + 3600),
        'x-ratelimit-resource': 'core',
        'x-github-api-version-selected': '2022-11-28',
      };
    };
    const headers = rateHeaders();
    const notFound = () => sendJson(res, 404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest', status: '404' }, headers);
    const badCredentials = () => sendJson(res, 401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' }, headers);
    const page = (items, extra = {}) => {
      const p = paginate(items, {
        base: fake.base, pathname: `${API_PREFIX}${apiPath}`, query, defaultPerPage: 30, maxPerPage: Math.min(100, maxPerPage), style: 'github',
      });
      return sendJson(res, 200, p.slice, { ...headers, ...extra, ...(p.link ? { link: p.link } : {}) });
    };
    if (req.method !== 'GET') return notFound();
    const auth = req.headers.authorization || '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7) : auth.startsWith('token ') ? auth.slice(6) : null;
    if (!token) return badCredentials();
    const seg = apiPath.replace(/^\//, '').split('/');

    if (seg[0] === 'orgs' && seg[2] === 'invitations') {
      const org = decodeURIComponent(seg[1]);
      const allowed = orgCredentials[token];
      if (!allowed) return badCredentials();
      if (!allowed.some((o) => o.toLowerCase() === org.toLowerCase())) {
        return sendJson(res, 403, {
          message: 'Resource not accessible by integration',
          documentation_url: 'https://docs.github.com/rest/orgs/members#list-pending-organization-invitations',
          status: '403',
        }, headers);
      }
      const list = invitations.filter((i) => i.org.toLowerCase() === org.toLowerCase());
      if (seg.length === 3) {
        return page(list.map((i) => ({
          id: i.id,
          node_id: `OI_${i.id}`,
          login: i.login ?? null,
          email: i.email ?? null,
          role: i.role ?? 'direct_member',
          created_at: '2026-01-05T10:00:00Z',
          failed_at: null,
          failed_reason: null,
          inviter: { login: 'owner', id: 1, type: 'User' },
          team_count: i.teams.length,
          invitation_teams_url: `https://api.github.com/organizations/1/invitations/${i.id}/teams`,
          invitation_source: 'member',
        })));
      }
      if (seg.length === 5 && seg[4] === 'teams') {
        const inv = list.find((i) => String(i.id) === seg[3]);
        if (!inv) return notFound();
        return page(inv.teams.map((t, n) => teamJson(null, t.slug, t.name, 500 + n)));
      }
      return notFound();
    }

    const tok = tokens.get(token);
    const user = tok && accounts.get(tok.login);
    if (!user) return badCredentials();
    const scopes = { 'x-oauth-scopes': tok.scope.split(/[ ,]+/).filter(Boolean).join(', ') };
    const path = seg.join('/');
    if (path === 'user') {
      return sendJson(res, 200, {
        login: user.login,
        id: user.id,
        node_id: `U_${user.id}`,
        avatar_url: `https://avatars.githubusercontent.com/u/${user.id}?v=4`,
        html_url: `https://github.com/${user.login}`,
        type: 'User',
        site_admin: false,
        name: user.name ?? null,
        company: null,
        blog: '',
        location: null,
        email: user.publicEmail ?? null,
        hireable: null,
        bio: null,
        public_repos: 3,
        followers: 1,
        following: 0,
        created_at: '2015-01-01T00:00:00Z',
        updated_at: '2026-01-01T00:00:00Z',
      }, { ...headers, ...scopes });
    }
    if (path === 'user/emails') {
      return page((user.emails ?? []).map((e) => ({
        email: e.email, primary: !!e.primary, verified: !!e.verified, visibility: e.primary ? 'private' : null,
      })), scopes);
    }
    if (path === 'user/memberships/orgs') {
      const wanted = query.get('state');
      return page((user.orgs ?? []).filter((m) => !wanted || wanted === m.state).map((m) => ({
        url: `https://api.github.com/orgs/${m.org}/memberships/${user.login}`,
        state: m.state,
        role: m.role ?? 'member',
        organization_url: `https://api.github.com/orgs/${m.org}`,
        organization: orgJson(m.org),
        user: { login: user.login, id: user.id, type: 'User' },
      })), scopes);
    }
    if (path === 'user/teams') {
      return page((user.teams ?? []).map((t, n) => ({
        ...teamJson(t.org, t.slug, t.name, 100 + n), members_count: 3, repos_count: 1,
      })), scopes);
    }
    return notFound();
  }

  fake = await startFakeServer('github', async (req, res, { url, query, form }) => {
    if (req.method === 'GET' && url.pathname === '/login/oauth/authorize') return authorize(req, res, query);
    if (req.method === 'POST' && url.pathname === '/login/oauth/access_token') return accessToken(req, res, form);
    if (url.pathname.startsWith(`${API_PREFIX}/`)) return api(req, res, url.pathname.slice(API_PREFIX.length), query);
    return sendJson(res, 404, { message: 'Not Found' });
  });

  return {
    base: fake.base,
    apiUrl: `${fake.base}${API_PREFIX}`,
    /** The person signed in at GitHub in "the browser": authorize requests approve as them. */
    actAs(login) { signedInAs = login; },
    /** Every request handled (since `mark()`), codes/tokens/secrets redacted. */
    requests: fake.requests,
    mark: fake.mark,
    /** Requests to one API path, e.g. '/orgs/carpentries/invitations' (since `mark()`). */
    apiRequests(apiPath, since = 0) { return fake.requests(since).filter((r) => r.path === `${API_PREFIX}${apiPath}`); },
    clearRequests: fake.clearRequests,
    close: fake.close,
  };
}
