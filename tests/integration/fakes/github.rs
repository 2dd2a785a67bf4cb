//! GitHub (or GitHub Enterprise Server, with the REST API under `/api/v3`) as its REST and OAuth
//! documentation describes it:
//!
//! - `POST /login/oauth/access_token`: form fields `client_id`, `client_secret`, `code`,
//!   `redirect_uri`, `code_verifier` (S256 only), or `grant_type=refresh_token`. JSON only when
//!   asked with `Accept: application/json`, otherwise form-encoded. Refusals are 200 with `error`
//!   (`bad_verification_code`, `incorrect_client_credentials`, `redirect_uri_mismatch`,
//!   `bad_refresh_token`). OAuth-app tokens (`gho_…`) do not expire; in "expiring" mode (GitHub
//!   Apps) answers carry `expires_in`, a rotating `refresh_token` and `refresh_token_expires_in`.
//! - `GET /user`, `/user/emails`, `/user/memberships/orgs` (`state` filter), `/user/teams`,
//!   `/orgs/{org}/invitations`, `/orgs/{org}/invitations/{id}/teams`: `per_page` (default 30, max
//!   100) and `page`, `Link` with `prev`/`next`/`last`/`first`; `X-RateLimit-*` headers on every
//!   answer; 401 `Bad credentials` for an unknown token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, Uri};
use axum::Router;
use serde_json::{json, Value};

use super::{
    add_header, intake, json_response, now_unix, paginate, random_token, s256, Fault, Incoming, LinkStyle, Recorder,
    Seen,
};

pub const CLIENT_ID: &str = "gh-client-id";
pub const CLIENT_SECRET: &str = "gh-client-secret-0123456789";

#[derive(Clone, Debug)]
pub struct Email {
    pub email: String,
    pub primary: bool,
    pub verified: bool,
}

#[derive(Clone, Debug)]
pub struct OrgMembership {
    pub org: String,
    /// `active` or `pending`.
    pub state: String,
    /// `admin` or `member`.
    pub role: String,
}

#[derive(Clone, Debug)]
pub struct Team {
    pub org: String,
    pub slug: String,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    /// The public profile address (`email` in `GET /user`).
    pub public_email: Option<String>,
    pub emails: Vec<Email>,
    pub orgs: Vec<OrgMembership>,
    pub teams: Vec<Team>,
}

impl User {
    pub fn new(id: u64, login: &str) -> Self {
        Self {
            id,
            login: login.into(),
            name: None,
            public_email: None,
            emails: Vec::new(),
            orgs: Vec::new(),
            teams: Vec::new(),
        }
    }
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }
    pub fn email(mut self, email: &str, primary: bool, verified: bool) -> Self {
        self.emails.push(Email { email: email.into(), primary, verified });
        self
    }
    pub fn org(mut self, org: &str, state: &str, role: &str) -> Self {
        self.orgs.push(OrgMembership { org: org.into(), state: state.into(), role: role.into() });
        self
    }
    pub fn team(mut self, org: &str, slug: &str, name: &str) -> Self {
        self.teams.push(Team { org: org.into(), slug: slug.into(), name: name.into() });
        self
    }
}

/// A pending invitation to an organization (and some of its teams).
#[derive(Clone, Debug)]
pub struct Invitation {
    pub id: u64,
    pub org: String,
    /// Invited by login, or (`None`) by e-mail address only.
    pub login: Option<String>,
    pub email: Option<String>,
    /// `direct_member`, `admin`, `billing_manager`, …
    pub role: String,
    pub teams: Vec<(String, String)>,
}

struct Code {
    login: String,
    challenge: Option<String>,
    redirect_uri: String,
    scope: String,
}

#[derive(Clone)]
struct Token {
    login: String,
    scope: String,
}

#[derive(Default)]
struct GhState {
    base: Mutex<String>,
    api_prefix: String,
    users: Mutex<HashMap<String, User>>,
    codes: Mutex<HashMap<String, Code>>,
    tokens: Mutex<HashMap<String, Token>>,
    refresh_tokens: Mutex<HashMap<String, Token>>,
    /// Organization credentials and the organizations each may administer.
    org_credentials: Mutex<HashMap<String, Vec<String>>>,
    invitations: Mutex<Vec<Invitation>>,
    /// GitHub App user tokens: `expires_in` + rotating refresh tokens.
    expiring: AtomicBool,
    /// Overrides the scope the token answer reports.
    granted_scope: Mutex<Option<String>>,
    rate_remaining: AtomicU64,
    recorder: Recorder,
}

/// A running fake GitHub.
#[derive(Clone)]
pub struct GithubFake {
    /// `http://127.0.0.1:PORT` (github_url).
    pub base: String,
    state: Arc<GhState>,
}

impl GithubFake {
    /// github.com style: the API at the root of the same server (tests point `api_url` at it).
    pub async fn start() -> Self {
        Self::start_with_prefix("").await
    }

    /// GitHub Enterprise Server style: the REST API under `/api/v3`.
    pub async fn start_enterprise() -> Self {
        Self::start_with_prefix("/api/v3").await
    }

    async fn start_with_prefix(prefix: &str) -> Self {
        let state =
            Arc::new(GhState { api_prefix: prefix.into(), rate_remaining: AtomicU64::new(5000), ..Default::default() });
        let router = Router::new().fallback(handle).with_state(state.clone());
        let base = super::serve(router).await;
        *state.base.lock().unwrap() = base.clone();
        Self { base, state }
    }

    /// Where the REST API is.
    pub fn api_url(&self) -> String {
        format!("{}{}", self.base, self.state.api_prefix)
    }

    pub fn add_user(&self, user: User) {
        self.state.users.lock().unwrap().insert(user.login.clone(), user);
    }

    pub fn add_invitation(&self, invitation: Invitation) {
        self.state.invitations.lock().unwrap().push(invitation);
    }

    /// A token that may list the pending invitations of `orgs`.
    pub fn add_org_credential(&self, token: &str, orgs: &[&str]) {
        self.state.org_credentials.lock().unwrap().insert(token.into(), orgs.iter().map(|s| s.to_string()).collect());
    }

    pub fn set_expiring_tokens(&self, on: bool) {
        self.state.expiring.store(on, Ordering::SeqCst);
    }

    pub fn set_granted_scope(&self, scope: &str) {
        *self.state.granted_scope.lock().unwrap() = Some(scope.into());
    }

    /// Revokes an access token (the person removed the app's authorization).
    pub fn revoke_token(&self, token: &str) {
        self.state.tokens.lock().unwrap().remove(token);
    }

    pub fn fault(&self, path: &str, page: Option<&str>, fault: Fault, times: Option<u32>) {
        self.state.recorder.add(path, page, fault, times);
    }

    /// `fault` on an API path (`/user/teams`), wherever the API lives.
    pub fn api_fault(&self, api_path: &str, page: Option<&str>, fault: Fault, times: Option<u32>) {
        self.fault(&format!("{}{api_path}", self.state.api_prefix), page, fault, times);
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.recorder.requests()
    }

    /// Requests to an API path (`/user/teams`).
    pub fn api_requests(&self, api_path: &str) -> Vec<Seen> {
        let path = format!("{}{api_path}", self.state.api_prefix);
        self.requests().into_iter().filter(|s| s.path == path).collect()
    }

    pub fn clear_requests(&self) {
        self.state.recorder.clear();
    }

    /// Every access token handed out so far.
    pub fn access_tokens(&self) -> Vec<String> {
        self.state.tokens.lock().unwrap().keys().cloned().collect()
    }

    /// Registers `code` for `login` as if GitHub had handed it out for an authorization request
    /// to hubauth's callback (without a PKCE challenge to check).
    pub fn preapprove(&self, code: &str, login: &str) {
        self.state.codes.lock().unwrap().insert(
            code.into(),
            Code {
                login: login.into(),
                challenge: None,
                redirect_uri: format!("{}/callback/github", crate::harness::ISSUER),
                scope: "read:user user:email read:org".into(),
            },
        );
    }

    /// The person `login` approves the authorization request at `authorize`: checks it the way
    /// GitHub does and returns the code GitHub sends back.
    pub fn approve(&self, authorize: &url::Url, login: &str) -> String {
        assert_eq!(authorize.path(), "/login/oauth/authorize", "{authorize}");
        assert!(authorize.as_str().starts_with(&self.base), "sent to {authorize}, not to the fake at {}", self.base);
        let q: HashMap<String, String> = authorize.query_pairs().into_owned().collect();
        assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT_ID));
        assert!(q.contains_key("state"));
        let challenge = q.get("code_challenge").cloned();
        if challenge.is_some() {
            assert_eq!(q.get("code_challenge_method").map(String::as_str), Some("S256"), "GitHub accepts only S256");
        }
        assert!(self.state.users.lock().unwrap().contains_key(login), "no such user {login}");
        let code = random_token("");
        self.state.codes.lock().unwrap().insert(
            code.clone(),
            Code {
                login: login.into(),
                challenge,
                redirect_uri: q.get("redirect_uri").cloned().unwrap_or_default(),
                scope: q.get("scope").cloned().unwrap_or_default(),
            },
        );
        code
    }
}

fn oauth_error(error: &str, description: &str) -> Value {
    json!({
        "error": error,
        "error_description": description,
        "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"
    })
}

/// Token answers: JSON when asked for it, form-encoded otherwise (as GitHub does).
fn token_answer(headers: &HeaderMap, body: &Value) -> Response<Body> {
    let wants_json = headers.get_all("accept").iter().any(|v| v.to_str().unwrap_or("").contains("application/json"));
    if wants_json {
        return json_response(200, body);
    }
    let pairs: Vec<(String, String)> = body
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
        .collect();
    Response::builder()
        .status(200)
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .body(Body::from(url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()))
        .unwrap()
}

fn issue(state: &GhState, headers: &HeaderMap, token: Token) -> Response<Body> {
    let access = random_token(if state.expiring.load(Ordering::SeqCst) { "ghu_" } else { "gho_" });
    state.tokens.lock().unwrap().insert(access.clone(), token.clone());
    let scope = state.granted_scope.lock().unwrap().clone().unwrap_or_else(|| token.scope.replace(' ', ","));
    let mut body = json!({"access_token": access, "token_type": "bearer", "scope": scope});
    if state.expiring.load(Ordering::SeqCst) {
        let refresh = random_token("ghr_");
        state.refresh_tokens.lock().unwrap().insert(refresh.clone(), token);
        body["expires_in"] = json!(28800);
        body["refresh_token"] = json!(refresh);
        body["refresh_token_expires_in"] = json!(15897600);
    }
    token_answer(headers, &body)
}

fn token_endpoint(state: &GhState, headers: &HeaderMap, form: &[(String, String)]) -> Response<Body> {
    let field = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
        return token_answer(
            headers,
            &oauth_error("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect."),
        );
    }
    if field("grant_type") == Some("refresh_token") {
        let old = field("refresh_token").unwrap_or_default();
        let Some(token) = state.refresh_tokens.lock().unwrap().remove(old) else {
            return token_answer(
                headers,
                &oauth_error("bad_refresh_token", "The refresh token passed is incorrect or expired."),
            );
        };
        return issue(state, headers, token);
    }
    let Some(code) = state.codes.lock().unwrap().remove(field("code").unwrap_or_default()) else {
        return token_answer(
            headers,
            &oauth_error("bad_verification_code", "The code passed is incorrect or expired."),
        );
    };
    if let Some(uri) = field("redirect_uri") {
        if uri != code.redirect_uri {
            return token_answer(
                headers,
                &oauth_error(
                    "redirect_uri_mismatch",
                    "The redirect_uri MUST match the registered callback URL for this application.",
                ),
            );
        }
    }
    if let Some(challenge) = &code.challenge {
        if field("code_verifier").map(s256).as_ref() != Some(challenge) {
            return token_answer(
                headers,
                &oauth_error("bad_verification_code", "The code_verifier does not match the challenge."),
            );
        }
    }
    issue(state, headers, Token { login: code.login, scope: code.scope })
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("token ")).map(str::to_string)
}

fn bad_credentials() -> Response<Body> {
    json_response(
        401,
        &json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
    )
}

fn not_found() -> Response<Body> {
    json_response(
        404,
        &json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}),
    )
}

fn org_json(org: &str) -> Value {
    json!({
        "login": org,
        "id": org.bytes().map(u64::from).sum::<u64>() + 9000,
        "node_id": format!("O_{org}"),
        "url": format!("https://api.github.com/orgs/{org}"),
        "repos_url": format!("https://api.github.com/orgs/{org}/repos"),
        "avatar_url": "https://avatars.githubusercontent.com/u/1?v=4",
        "description": null
    })
}

fn team_json(org: Option<&str>, slug: &str, name: &str, id: u64) -> Value {
    let mut t = json!({
        "id": id,
        "node_id": format!("T_{slug}"),
        "url": format!("https://api.github.com/teams/{id}"),
        "html_url": format!("https://github.com/orgs/{}/teams/{slug}", org.unwrap_or("org")),
        "name": name,
        "slug": slug,
        "description": null,
        "privacy": "closed",
        "notification_setting": "notifications_enabled",
        "permission": "pull",
        "parent": null
    });
    if let Some(org) = org {
        t["organization"] = org_json(org);
    }
    t
}

fn api_route(
    state: &GhState,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Response<Body> {
    if method != Method::GET {
        return not_found();
    }
    let base = state.base.lock().unwrap().clone();
    let full_path = format!("{}{path}", state.api_prefix);
    let page = |items: Vec<Value>| paginate(&items, &base, &full_path, query, 30, 100, LinkStyle::Github);
    let Some(token) = bearer(headers) else { return bad_credentials() };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let ["orgs", org, "invitations", rest @ ..] = segments.as_slice() {
        let Some(orgs) = state.org_credentials.lock().unwrap().get(&token).cloned() else { return bad_credentials() };
        if !orgs.iter().any(|o| o.eq_ignore_ascii_case(org)) {
            return json_response(
                403,
                &json!({
                    "message": "Resource not accessible by integration",
                    "documentation_url": "https://docs.github.com/rest/orgs/members#list-pending-organization-invitations",
                    "status": "403"
                }),
            );
        }
        let invitations: Vec<Invitation> =
            state.invitations.lock().unwrap().iter().filter(|i| i.org.eq_ignore_ascii_case(org)).cloned().collect();
        return match rest {
            [] => page(
                invitations
                    .iter()
                    .map(|i| {
                        json!({
                            "id": i.id,
                            "node_id": format!("OI_{}", i.id),
                            "login": i.login,
                            "email": i.email,
                            "role": i.role,
                            "created_at": "2026-01-05T10:00:00Z",
                            "failed_at": null,
                            "failed_reason": null,
                            "inviter": {"login": "owner", "id": 1, "type": "User"},
                            "team_count": i.teams.len(),
                            "invitation_teams_url":
                                format!("https://api.github.com/organizations/1/invitations/{}/teams", i.id),
                            "invitation_source": "member"
                        })
                    })
                    .collect(),
            ),
            [id, "teams"] => match invitations.iter().find(|i| i.id.to_string() == *id) {
                Some(i) => page(
                    i.teams
                        .iter()
                        .enumerate()
                        .map(|(n, (slug, name))| team_json(None, slug, name, 500 + n as u64))
                        .collect(),
                ),
                None => not_found(),
            },
            _ => not_found(),
        };
    }
    let Some(token) = state.tokens.lock().unwrap().get(&token).cloned() else { return bad_credentials() };
    let Some(user) = state.users.lock().unwrap().get(&token.login).cloned() else { return bad_credentials() };
    let mut res = match segments.as_slice() {
        ["user"] => json_response(
            200,
            &json!({
                "login": user.login,
                "id": user.id,
                "node_id": format!("U_{}", user.id),
                "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", user.id),
                "html_url": format!("https://github.com/{}", user.login),
                "type": "User",
                "site_admin": false,
                "name": user.name,
                "company": null,
                "blog": "",
                "location": null,
                "email": user.public_email,
                "hireable": null,
                "bio": null,
                "public_repos": 3,
                "followers": 1,
                "following": 0,
                "created_at": "2015-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z"
            }),
        ),
        ["user", "emails"] => page(
            user.emails
                .iter()
                .map(|e| {
                    let visibility = if e.primary { json!("private") } else { Value::Null };
                    json!({"email": e.email, "primary": e.primary, "verified": e.verified, "visibility": visibility})
                })
                .collect(),
        ),
        ["user", "memberships", "orgs"] => {
            let wanted = query.iter().find(|(k, _)| k == "state").map(|(_, v)| v.clone());
            page(
                user.orgs
                    .iter()
                    .filter(|m| wanted.as_deref().is_none_or(|w| w == m.state))
                    .map(|m| {
                        json!({
                            "url": format!("https://api.github.com/orgs/{}/memberships/{}", m.org, user.login),
                            "state": m.state,
                            "role": m.role,
                            "organization_url": format!("https://api.github.com/orgs/{}", m.org),
                            "organization": org_json(&m.org),
                            "user": {"login": user.login, "id": user.id, "type": "User"}
                        })
                    })
                    .collect(),
            )
        }
        ["user", "teams"] => page(
            user.teams
                .iter()
                .enumerate()
                .map(|(n, t)| {
                    let mut j = team_json(Some(&t.org), &t.slug, &t.name, 100 + n as u64);
                    j["members_count"] = json!(3);
                    j["repos_count"] = json!(1);
                    j
                })
                .collect(),
        ),
        _ => not_found(),
    };
    add_header(&mut res, "x-oauth-scopes", &token.scope.replace(' ', ", "));
    res
}

async fn handle(
    State(state): State<Arc<GhState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let Incoming { path, query, form } = match intake(&state.recorder, &method, &uri, &headers, &body).await {
        Ok(request) => request,
        Err(fault) => return fault,
    };
    if path == "/login/oauth/access_token" && method == Method::POST {
        return token_endpoint(&state, &headers, &form);
    }
    let Some(api_path) = path.strip_prefix(&state.api_prefix).filter(|p| p.starts_with('/')) else {
        return not_found();
    };
    let mut res = api_route(&state, &method, api_path, &query, &headers);
    let remaining = state.rate_remaining.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
    add_header(&mut res, "x-ratelimit-limit", "5000");
    add_header(&mut res, "x-ratelimit-remaining", &remaining.to_string());
    add_header(&mut res, "x-ratelimit-used", &(5000 - remaining).to_string());
    add_header(&mut res, "x-ratelimit-reset", &(now_unix() + 3600).to_string());
    add_header(&mut res, "x-ratelimit-resource", "core");
    add_header(&mut res, "x-github-api-version-selected", "2022-11-28");
    res
}
