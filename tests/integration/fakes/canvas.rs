//! Canvas LMS as its API documentation (and source) describes it:
//!
//! - `POST /login/oauth2/token`: `grant_type` `authorization_code` (`code`, `redirect_uri`,
//!   `code_verifier` when the authorization had an S256 challenge) or `refresh_token`; client id
//!   and secret in the body (or Basic). The answer has `access_token`, `token_type: Bearer`,
//!   `user {id, name}`, `expires_in: 3600`, and `refresh_token` only for a code: a refresh keeps
//!   the same refresh token and replaces the access token. Errors: 400 `invalid_grant` for an
//!   unknown code, 400 `invalid_request` "refresh_token not found", 401 `invalid_client`.
//! - `GET /api/v1/users/self/profile`, `/api/v1/courses` (`enrollment_state`, `include[]=term`),
//!   `/api/v1/users/self/groups`: `per_page` (default 10, capped — Canvas has an unspecified
//!   maximum; 50 here by default) and `page`, `Link` with `current`/`next`/`prev`/`first`/`last`;
//!   `X-Request-Cost` and `X-Rate-Limit-Remaining` on every answer; 401 with
//!   `WWW-Authenticate` for an unknown token. A course whose nickname the person set has `name`
//!   = nickname and `original_name` = the real name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, Uri};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::{
    add_header, intake, json_response, paginate, random_token, s256, Fault, Incoming, LinkStyle, Recorder, Seen,
};

pub const CLIENT_ID: &str = "10000000000042";
pub const CLIENT_SECRET: &str = "canvas-developer-key-secret-0123";

#[derive(Clone, Debug)]
pub struct Enrollment {
    /// `student`, `teacher`, `ta`, `observer`, `designer`.
    pub kind: String,
    /// `StudentEnrollment` or a custom role's name.
    pub role: String,
    /// The enrollment's workflow state: `active`, `invited`, `completed`, …
    pub state: String,
}

#[derive(Clone, Debug)]
pub struct Course {
    pub id: u64,
    pub name: String,
    /// The person's nickname for the course, if they set one.
    pub nickname: Option<String>,
    pub course_code: String,
    pub sis_course_id: Option<String>,
    pub term: Option<(u64, String)>,
    pub enrollments: Vec<Enrollment>,
    /// Canvas answers `{"id", "access_restricted_by_date": true}` for these.
    pub restricted_by_date: bool,
}

impl Course {
    pub fn new(id: u64, name: &str, code: &str) -> Self {
        Self {
            id,
            name: name.into(),
            nickname: None,
            course_code: code.into(),
            sis_course_id: None,
            term: None,
            enrollments: Vec::new(),
            restricted_by_date: false,
        }
    }
    pub fn enrolled(mut self, kind: &str, role: &str, state: &str) -> Self {
        self.enrollments.push(Enrollment { kind: kind.into(), role: role.into(), state: state.into() });
        self
    }
    pub fn term(mut self, id: u64, name: &str) -> Self {
        self.term = Some((id, name.into()));
        self
    }
    pub fn sis(mut self, sis: &str) -> Self {
        self.sis_course_id = Some(sis.into());
        self
    }
    pub fn nickname(mut self, nickname: &str) -> Self {
        self.nickname = Some(nickname.into());
        self
    }
}

#[derive(Clone, Debug)]
pub struct Group {
    pub id: u64,
    pub name: String,
    pub course_id: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub login_id: String,
    pub primary_email: Option<String>,
    pub sis_user_id: Option<String>,
    pub courses: Vec<Course>,
    pub groups: Vec<Group>,
}

impl User {
    pub fn new(id: u64, login_id: &str, name: &str) -> Self {
        Self {
            id,
            name: name.into(),
            login_id: login_id.into(),
            primary_email: None,
            sis_user_id: None,
            courses: Vec::new(),
            groups: Vec::new(),
        }
    }
    pub fn email(mut self, email: &str) -> Self {
        self.primary_email = Some(email.into());
        self
    }
    pub fn sis(mut self, sis: &str) -> Self {
        self.sis_user_id = Some(sis.into());
        self
    }
    pub fn course(mut self, course: Course) -> Self {
        self.courses.push(course);
        self
    }
    pub fn group(mut self, id: u64, name: &str, course_id: Option<u64>) -> Self {
        self.groups.push(Group { id, name: name.into(), course_id });
        self
    }
}

struct Code {
    user: u64,
    challenge: Option<String>,
    redirect_uri: String,
}

#[derive(Default)]
struct CvState {
    base: Mutex<String>,
    users: Mutex<HashMap<u64, User>>,
    codes: Mutex<HashMap<String, Code>>,
    tokens: Mutex<HashMap<String, u64>>,
    /// Refresh token → (user, its current access token).
    refresh_tokens: Mutex<HashMap<String, (u64, String)>>,
    max_per_page: AtomicUsize,
    recorder: Recorder,
}

#[derive(Clone)]
pub struct CanvasFake {
    pub base: String,
    state: Arc<CvState>,
}

impl CanvasFake {
    pub async fn start() -> Self {
        let state = Arc::new(CvState { max_per_page: AtomicUsize::new(50), ..Default::default() });
        let router = Router::new().fallback(handle).with_state(state.clone());
        let base = super::serve(router).await;
        *state.base.lock().unwrap() = base.clone();
        Self { base, state }
    }

    pub fn add_user(&self, user: User) {
        self.state.users.lock().unwrap().insert(user.id, user);
    }

    /// The largest page this Canvas serves, whatever `per_page` asks.
    pub fn set_max_per_page(&self, n: usize) {
        self.state.max_per_page.store(n, Ordering::SeqCst);
    }

    pub fn fault(&self, path: &str, page: Option<&str>, fault: Fault, times: Option<u32>) {
        self.state.recorder.add(path, page, fault, times);
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.recorder.requests()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        self.requests().into_iter().filter(|s| s.path == path).collect()
    }

    pub fn clear_requests(&self) {
        self.state.recorder.clear();
    }

    pub fn access_tokens(&self) -> Vec<String> {
        self.state.tokens.lock().unwrap().keys().cloned().collect()
    }

    pub fn refresh_tokens(&self) -> Vec<String> {
        self.state.refresh_tokens.lock().unwrap().keys().cloned().collect()
    }

    /// The person removed the integration in their settings: its tokens are deleted.
    pub fn revoke_all(&self) {
        self.state.tokens.lock().unwrap().clear();
        self.state.refresh_tokens.lock().unwrap().clear();
    }

    /// The user `user` approves the request at `authorize`; returns the code Canvas sends back.
    pub fn approve(&self, authorize: &url::Url, user: u64) -> String {
        assert_eq!(authorize.path(), "/login/oauth2/auth", "{authorize}");
        assert!(authorize.as_str().starts_with(&self.base), "sent to {authorize}, not to the fake at {}", self.base);
        let q: HashMap<String, String> = authorize.query_pairs().into_owned().collect();
        assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT_ID));
        assert_eq!(q.get("response_type").map(String::as_str), Some("code"), "the only response_type Canvas supports");
        // Canvas refuses any prompt but `none`.
        assert!(q.get("prompt").is_none_or(|p| p == "none"), "Canvas answers unsupported_prompt_type");
        let challenge = q.get("code_challenge").cloned();
        if challenge.is_some() {
            assert_eq!(q.get("code_challenge_method").map(String::as_str), Some("S256"));
        }
        assert!(self.state.users.lock().unwrap().contains_key(&user), "no such user {user}");
        let code = random_token("");
        self.state.codes.lock().unwrap().insert(
            code.clone(),
            Code { user, challenge, redirect_uri: q.get("redirect_uri").cloned().unwrap_or_default() },
        );
        code
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response<Body> {
    let mut res = json_response(status, &json!({"error": error, "error_description": description}));
    if status == 401 {
        add_header(&mut res, "www-authenticate", "Canvas OAuth 2.0");
    }
    res
}

fn token_endpoint(state: &CvState, headers: &HeaderMap, form: &[(String, String)]) -> Response<Body> {
    let field = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_string(), b.to_string())));
    let client_id = field("client_id").or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let secret = field("client_secret").or_else(|| basic.as_ref().map(|b| b.1.clone()));
    if client_id.as_deref() != Some(CLIENT_ID) {
        return oauth_error(401, "invalid_client", "unknown client");
    }
    if secret.as_deref() != Some(CLIENT_SECRET) {
        return oauth_error(401, "invalid_client", "invalid client");
    }
    let users = state.users.lock().unwrap();
    match field("grant_type").as_deref() {
        Some("authorization_code") => {
            let Some(code) = state.codes.lock().unwrap().remove(&field("code").unwrap_or_default()) else {
                return oauth_error(400, "invalid_grant", "authorization_code not found");
            };
            if field("redirect_uri").as_deref() != Some(code.redirect_uri.as_str()) {
                return oauth_error(400, "invalid_request", "redirect_uri does not match client settings");
            }
            if let Some(challenge) = &code.challenge {
                if field("code_verifier").as_deref().map(s256).as_ref() != Some(challenge) {
                    return oauth_error(400, "invalid_grant", "authorization_code not found");
                }
            }
            let user = &users[&code.user];
            let access = random_token(&format!("{}~", user.id % 10000));
            let refresh = random_token(&format!("{}~", user.id % 10000));
            state.tokens.lock().unwrap().insert(access.clone(), user.id);
            state.refresh_tokens.lock().unwrap().insert(refresh.clone(), (user.id, access.clone()));
            json_response(
                200,
                &json!({
                    "access_token": access,
                    "token_type": "Bearer",
                    "user": user_json(user),
                    "canvas_region": "us-east-1",
                    "refresh_token": refresh,
                    "expires_in": 3600
                }),
            )
        }
        Some("refresh_token") => {
            let rt = field("refresh_token").unwrap_or_default();
            let mut refresh = state.refresh_tokens.lock().unwrap();
            let Some((user_id, old_access)) = refresh.get(&rt).cloned() else {
                return oauth_error(400, "invalid_request", "refresh_token not found");
            };
            // regenerate_access_token: the old access token stops working.
            let mut tokens = state.tokens.lock().unwrap();
            tokens.remove(&old_access);
            let access = random_token(&format!("{}~", user_id % 10000));
            tokens.insert(access.clone(), user_id);
            refresh.insert(rt, (user_id, access.clone()));
            let user = &users[&user_id];
            json_response(
                200,
                &json!({
                    "access_token": access,
                    "token_type": "Bearer",
                    "user": user_json(user),
                    "canvas_region": "us-east-1",
                    "expires_in": 3600
                }),
            )
        }
        _ => oauth_error(400, "unsupported_grant_type", "The grant_type you requested is not currently supported"),
    }
}

fn user_json(user: &User) -> Value {
    json!({"id": user.id, "name": user.name, "global_id": format!("1000000{}", user.id), "effective_locale": "en"})
}

fn course_json(c: &Course, include_term: bool, user_id: u64, enrollments: &[&Enrollment]) -> Value {
    if c.restricted_by_date {
        return json!({"id": c.id, "access_restricted_by_date": true});
    }
    let mut j = json!({
        "id": c.id,
        "name": c.nickname.clone().unwrap_or_else(|| c.name.clone()),
        "account_id": 1,
        "uuid": format!("uuid-{}", c.id),
        "start_at": null,
        "grading_standard_id": null,
        "is_public": false,
        "created_at": "2025-08-01T00:00:00Z",
        "course_code": c.course_code,
        "default_view": "modules",
        "root_account_id": 1,
        "enrollment_term_id": c.term.as_ref().map(|t| t.0).unwrap_or(1),
        "license": "private",
        "end_at": null,
        "public_syllabus": false,
        "public_syllabus_to_auth": false,
        "storage_quota_mb": 500,
        "is_public_to_auth_users": false,
        "homeroom_course": false,
        "course_color": null,
        "friendly_name": null,
        "apply_assignment_group_weights": false,
        "calendar": {"ics": format!("https://canvas.example.edu/feeds/calendars/course_{}.ics", c.id)},
        "time_zone": "America/New_York",
        "blueprint": false,
        "template": false,
        "enrollments": enrollments.iter().map(|e| json!({
            "type": e.kind,
            "role": e.role,
            "role_id": 3,
            "user_id": user_id,
            "enrollment_state": e.state,
            "limit_privileges_to_course_section": false
        })).collect::<Vec<_>>(),
        "hide_final_grades": false,
        "workflow_state": "available",
        "restrict_enrollments_to_course_dates": false
    });
    if c.nickname.is_some() {
        j["original_name"] = json!(c.name);
    }
    if let Some(sis) = &c.sis_course_id {
        j["sis_course_id"] = json!(sis);
        j["integration_id"] = Value::Null;
    }
    if include_term {
        let (id, name) = c.term.clone().unwrap_or((1, "Default Term".into()));
        j["term"] = json!({
            "id": id,
            "name": name,
            "start_at": null,
            "end_at": null,
            "created_at": "2025-01-01T00:00:00Z",
            "workflow_state": "active",
            "grading_period_group_id": null
        });
    }
    j
}

/// Which enrollment workflow states an `enrollment_state` filter lets through.
fn matches_filter(filter: Option<&str>, state: &str) -> bool {
    match filter {
        None => matches!(state, "active" | "invited"),
        Some("active") => state == "active",
        Some("invited_or_pending") => matches!(state, "invited" | "creation_pending"),
        Some("completed") => state == "completed",
        Some(_) => false,
    }
}

fn api_route(state: &CvState, path: &str, query: &[(String, String)], headers: &HeaderMap) -> Response<Body> {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let user_id = token.and_then(|t| state.tokens.lock().unwrap().get(t).copied());
    let Some(user) = user_id.and_then(|id| state.users.lock().unwrap().get(&id).cloned()) else {
        let mut res = json_response(401, &json!({"errors": [{"message": "Invalid access token."}]}));
        add_header(&mut res, "www-authenticate", "Bearer realm=\"canvas-lms\"");
        return res;
    };
    let base = state.base.lock().unwrap().clone();
    let max = state.max_per_page.load(Ordering::SeqCst);
    let page = |items: Vec<Value>| paginate(&items, &base, path, query, 10, max, LinkStyle::Canvas);
    let get = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    match path {
        "/api/v1/users/self/profile" => {
            let mut p = json!({
                "id": user.id,
                "name": user.name,
                "short_name": user.name,
                "sortable_name": user.name,
                "title": null,
                "bio": null,
                "pronunciation": null,
                "primary_email": user.primary_email,
                "login_id": user.login_id,
                "integration_id": null,
                "time_zone": "America/New_York",
                "locale": null,
                "effective_locale": "en",
                "avatar_url": "https://canvas.example.edu/images/messages/avatar-50.png",
                "calendar": {"ics": format!("https://canvas.example.edu/feeds/calendars/user_{}.ics", user.id)},
                "lti_user_id": format!("lti-{}", user.id),
                "k5_user": false,
                "use_classic_font_in_k5": false
            });
            if let Some(sis) = &user.sis_user_id {
                p["sis_user_id"] = json!(sis);
            }
            json_response(200, &p)
        }
        "/api/v1/courses" => {
            let include_term = query.iter().any(|(k, v)| k == "include[]" && v == "term");
            let filter = get("enrollment_state");
            page(
                user.courses
                    .iter()
                    .filter_map(|c| {
                        let matching: Vec<&Enrollment> =
                            c.enrollments.iter().filter(|e| matches_filter(filter, &e.state)).collect();
                        (!matching.is_empty()).then(|| course_json(c, include_term, user.id, &matching))
                    })
                    .collect(),
            )
        }
        "/api/v1/users/self/groups" => page(
            user.groups
                .iter()
                .map(|g| {
                    let mut j = json!({
                        "id": g.id,
                        "name": g.name,
                        "description": null,
                        "is_public": false,
                        "followed_by_user": false,
                        "join_level": "invitation_only",
                        "members_count": 4,
                        "avatar_url": null,
                        "context_type": if g.course_id.is_some() { "Course" } else { "Account" },
                        "role": null,
                        "group_category_id": 7,
                        "sis_group_id": null,
                        "sis_import_id": null,
                        "storage_quota_mb": 50,
                        "permissions": {"create_discussion_topic": true, "create_announcement": true},
                        "concluded": false
                    });
                    match g.course_id {
                        Some(c) => j["course_id"] = json!(c),
                        None => j["account_id"] = json!(1),
                    }
                    j
                })
                .collect(),
        ),
        _ => json_response(404, &json!({"errors": [{"message": "The specified resource does not exist."}]})),
    }
}

async fn handle(
    State(state): State<Arc<CvState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let Incoming { path, query, form } = match intake(&state.recorder, &method, &uri, &headers, &body).await {
        Ok(request) => request,
        Err(fault) => return fault,
    };
    if path == "/login/oauth2/token" && method == Method::POST {
        return token_endpoint(&state, &headers, &form);
    }
    if method != Method::GET {
        return json_response(404, &json!({"errors": [{"message": "The specified resource does not exist."}]}));
    }
    let mut res = api_route(&state, &path, &query, &headers);
    add_header(&mut res, "x-request-cost", "0.0131");
    add_header(&mut res, "x-rate-limit-remaining", "598.8");
    res
}
