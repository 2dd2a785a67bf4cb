// A fake Canvas LMS for hubauth's `canvas` connector, in the test's own Node process. Shapes follow
// Canvas's API documentation and hubauth's Rust fake (tests/integration/fakes/canvas.rs):
//
//   GET  /login/oauth2/auth      auto-approves for the person "the browser" is signed in as
//                                (actAs(userId)): 302 to redirect_uri with code + state. Checks
//                                client_id, response_type=code, the registered callback URL, no
//                                prompt other than none, PKCE method S256.
//   POST /login/oauth2/token     grant_type authorization_code (code, redirect_uri, code_verifier)
//                                or refresh_token; client id + secret in the body (or Basic).
//                                Answers access_token, token_type Bearer, user {id, name},
//                                expires_in 3600, refresh_token (only for a code; a refresh keeps
//                                it and replaces the access token). 400 invalid_grant for an
//                                unknown code, 400 invalid_request "refresh_token not found",
//                                401 invalid_client.
//   GET  /api/v1/users/self/profile
//   GET  /api/v1/courses         ?enrollment_state=active|invited_or_pending|completed, include[]=term
//   GET  /api/v1/users/self/groups
//                                `per_page` (default 10, max `maxPerPage`, 50 unless given) and
//                                `page`; Canvas-style `Link` (current/next/prev/first/last);
//                                X-Request-Cost and X-Rate-Limit-Remaining on every answer; 401
//                                with WWW-Authenticate for an unknown token.
//
//   const cv = await startCanvasFake({ clientId, clientSecret, callbackUrl, users, maxPerPage: 2 });
//   cv.actAs(501); const m = cv.mark(); …; cv.requestsTo('/api/v1/courses', m); await cv.close();
import {
  startFakeServer, paginate, s256, randomToken, sendJson, sendHtml, redirect,
} from './common.mjs';

/**
 * users: [{ id, name, loginId, primaryEmail, sisUserId,
 *           courses: [{ id, name, courseCode, sisCourseId, term: {id, name}, nickname,
 *                       enrollments: [{ type: 'student', role: 'StudentEnrollment', state: 'active' }] }],
 *           groups: [{ id, name, courseId }] }]
 */
export async function startCanvasFake({ clientId, clientSecret, callbackUrl, users = [], maxPerPage = 50 }) {
  const people = new Map(users.map((u) => [u.id, u]));
  const codes = new Map();
  const tokens = new Map(); // access token → user id
  const refreshTokens = new Map(); // refresh token → { userId, access }
  let signedInAs = null;
  let fake;

  const oauthError = (res, status, error, description) => sendJson(
    res, status, { error, error_description: description },
    status === 401 ? { 'www-authenticate': 'Canvas OAuth 2.0' } : {},
  );
  const userJson = (u) => ({ id: u.id, name: u.name, global_id: `1000000${u.id}`, effective_locale: 'en' });

  function authorize(req, res, query) {
    if (query.get('client_id') !== clientId) {
      return sendJson(res, 400, { error: 'invalid_client', error_description: 'unknown client' });
    }
    if (query.get('redirect_uri') !== callbackUrl) {
      return sendJson(res, 400, { error: 'invalid_request', error_description: 'redirect_uri does not match client settings' });
    }
    const back = new URL(callbackUrl);
    if (query.get('state') !== null) back.searchParams.set('state', query.get('state'));
    if (query.get('response_type') !== 'code') {
      back.searchParams.set('error', 'unsupported_response_type');
      return redirect(res, back.href);
    }
    if (query.get('prompt') && query.get('prompt') !== 'none') {
      back.searchParams.set('error', 'unsupported_prompt_type');
      return redirect(res, back.href);
    }
    const challenge = query.get('code_challenge');
    if (challenge && query.get('code_challenge_method') !== 'S256') {
      back.searchParams.set('error', 'invalid_request');
      return redirect(res, back.href);
    }
    if (signedInAs === null || !people.has(signedInAs)) {
      return sendHtml(res, 200, '<h1>Log In to Canvas</h1><p>(fake: call actAs(userId) first)</p>');
    }
    const code = randomToken();
    codes.set(code, { userId: signedInAs, challenge, redirectUri: callbackUrl });
    back.searchParams.set('code', code);
    return redirect(res, back.href);
  }

  function token(req, res, form) {
    let basic = null;
    const h = req.headers.authorization || '';
    if (h.startsWith('Basic ')) {
      const d = Buffer.from(h.slice(6), 'base64').toString();
      const i = d.indexOf(':');
      if (i >= 0) basic = [d.slice(0, i), d.slice(i + 1)];
    }
    const id = form.get('client_id') ?? basic?.[0];
    const secret = form.get('client_secret') ?? basic?.[1];
    if (id !== clientId) return oauthError(res, 401, 'invalid_client', 'unknown client');
    if (secret !== clientSecret) return oauthError(res, 401, 'invalid_client', 'invalid client');
    const grant = form.get('grant_type');
    if (grant === 'authorization_code') {
      const code = codes.get(form.get('code') ?? '');
      codes.delete(form.get('code') ?? '');
      if (!code) return oauthError(res, 400, 'invalid_grant', 'authorization_code not found');
      if (form.get('redirect_uri') !== code.redirectUri) {
        return oauthError(res, 400, 'invalid_request', 'redirect_uri does not match client settings');
      }
      if (code.challenge && s256(form.get('code_verifier') ?? '') !== code.challenge) {
        return oauthError(res, 400, 'invalid_grant', 'authorization_code not found');
      }
      const u = people.get(code.userId);
      const access = randomToken(`${u.id % 10000}~`);
      const refresh = randomToken(`${u.id % 10000}~`);
      tokens.set(access, u.id);
      refreshTokens.set(refresh, { userId: u.id, access });
      return sendJson(res, 200, {
        access_token: access, token_type: 'Bearer', user: userJson(u), canvas_region: 'us-east-1',
        refresh_token: refresh, expires_in: 3600,
      });
    }
    if (grant === 'refresh_token') {
      const rt = form.get('refresh_token') ?? '';
      const entry = refreshTokens.get(rt);
      if (!entry) return oauthError(res, 400, 'invalid_request', 'refresh_token not found');
      tokens.delete(entry.access); // regenerate_access_token: the old one stops working
      const access = randomToken(`${entry.userId % 10000}~`);
      tokens.set(access, entry.userId);
      entry.access = access;
      return sendJson(res, 200, {
        access_token: access, token_type: 'Bearer', user: userJson(people.get(entry.userId)),
        canvas_region: 'us-east-1', expires_in: 3600,
      });
    }
    return oauthError(res, 400, 'unsupported_grant_type', 'The grant_type you requested is not currently supported');
  }

  const matchesFilter = (filter, state) => {
    if (!filter) return state === 'active' || state === 'invited';
    if (filter === 'active') return state === 'active';
    if (filter === 'invited_or_pending') return state === 'invited' || state === 'creation_pending';
    if (filter === 'completed') return state === 'completed';
    return false;
  };

  function courseJson(c, includeTerm, userId, enrollments) {
    const j = {
      id: c.id,
      name: c.nickname ?? c.name,
      account_id: 1,
      uuid: `uuid-${c.id}`,
      start_at: null,
      is_public: false,
      created_at: '2025-08-01T00:00:00Z',
      course_code: c.courseCode,
      default_view: 'modules',
      root_account_id: 1,
      enrollment_term_id: c.term?.id ?? 1,
      license: 'private',
      end_at: null,
      public_syllabus: false,
      storage_quota_mb: 500,
      time_zone: 'America/Los_Angeles',
      blueprint: false,
      template: false,
      enrollments: enrollments.map((e) => ({
        type: e.type, role: e.role, role_id: 3, user_id: userId, enrollment_state: e.state,
        limit_privileges_to_course_section: false,
      })),
      hide_final_grades: false,
      workflow_state: 'available',
      restrict_enrollments_to_course_dates: false,
    };
    if (c.nickname) j.original_name = c.name;
    if (c.sisCourseId) { j.sis_course_id = c.sisCourseId; j.integration_id = null; }
    if (includeTerm) {
      const t = c.term ?? { id: 1, name: 'Default Term' };
      j.term = { id: t.id, name: t.name, start_at: null, end_at: null, created_at: '2025-01-01T00:00:00Z', workflow_state: 'active', grading_period_group_id: null };
    }
    return j;
  }

  function api(req, res, pathname, query) {
    const costHeaders = { 'x-request-cost': '0.0131', 'x-rate-limit-remaining': '598.8' };
    const auth = req.headers.authorization || '';
    const userId = auth.startsWith('Bearer ') ? tokens.get(auth.slice(7)) : undefined;
    const u = userId !== undefined ? people.get(userId) : undefined;
    if (!u) {
      return sendJson(res, 401, { errors: [{ message: 'Invalid access token.' }] }, { ...costHeaders, 'www-authenticate': 'Bearer realm="canvas-lms"' });
    }
    const page = (items) => {
      const p = paginate(items, { base: fake.base, pathname, query, defaultPerPage: 10, maxPerPage, style: 'canvas' });
      return sendJson(res, 200, p.slice, { ...costHeaders, ...(p.link ? { link: p.link } : {}) });
    };
    if (pathname === '/api/v1/users/self/profile') {
      const p = {
        id: u.id, name: u.name, short_name: u.name, sortable_name: u.name, title: null, bio: null,
        primary_email: u.primaryEmail ?? null, login_id: u.loginId, integration_id: null,
        time_zone: 'America/Los_Angeles', locale: null, effective_locale: 'en',
        avatar_url: 'https://canvas.example.edu/images/messages/avatar-50.png',
        lti_user_id: `lti-${u.id}`, k5_user: false,
      };
      if (u.sisUserId) p.sis_user_id = u.sisUserId;
      return sendJson(res, 200, p, costHeaders);
    }
    if (pathname === '/api/v1/courses') {
      const includeTerm = query.getAll('include[]').includes('term');
      const filter = query.get('enrollment_state');
      return page((u.courses ?? []).flatMap((c) => {
        const matching = c.enrollments.filter((e) => matchesFilter(filter, e.state));
        return matching.length ? [courseJson(c, includeTerm, u.id, matching)] : [];
      }));
    }
    if (pathname === '/api/v1/users/self/groups') {
      return page((u.groups ?? []).map((g) => ({
        id: g.id, name: g.name, description: null, is_public: false, followed_by_user: false,
        join_level: 'invitation_only', members_count: 4, avatar_url: null,
        context_type: g.courseId ? 'Course' : 'Account', role: null, group_category_id: 7,
        sis_group_id: null, storage_quota_mb: 50, concluded: false,
        ...(g.courseId ? { course_id: g.courseId } : { account_id: 1 }),
      })));
    }
    return sendJson(res, 404, { errors: [{ message: 'The specified resource does not exist.' }] }, costHeaders);
  }

  fake = await startFakeServer('canvas', async (req, res, { url, query, form }) => {
    if (req.method === 'GET' && url.pathname === '/login/oauth2/auth') return authorize(req, res, query);
    if (req.method === 'POST' && url.pathname === '/login/oauth2/token') return token(req, res, form);
    if (req.method === 'GET' && url.pathname.startsWith('/api/v1/')) return api(req, res, url.pathname, query);
    return sendJson(res, 404, { errors: [{ message: 'The specified resource does not exist.' }] });
  });

  return {
    base: fake.base,
    /** The person signed in at Canvas in "the browser": authorize requests approve as them. */
    actAs(userId) { signedInAs = userId; },
    /** Every request handled (since `mark()`), codes/tokens/secrets redacted. */
    requests: fake.requests,
    mark: fake.mark,
    requestsTo(pathname, since = 0) { return fake.requests(since).filter((r) => r.path === pathname); },
    clearRequests: fake.clearRequests,
    close: fake.close,
  };
}
