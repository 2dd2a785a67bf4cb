//! `canvas`: Canvas LMS through a developer key (OAuth2 authorization code, PKCE S256).
//!
//! Endpoints (Canvas "OAuth2 Endpoints"): the browser goes to `{canvas_url}/login/oauth2/auth`;
//! the code is exchanged at `{canvas_url}/login/oauth2/token` with the client id and secret in
//! the body. Canvas access tokens live an hour; the refresh token stays the same (a refresh
//! answer carries none, the old one is kept), and an unknown or revoked one is refused
//! (`invalid_request` "refresh_token not found", or `invalid_grant`), which ends the session.
//!
//! With the person's token, at once:
//!
//! - `GET /api/v1/users/self/profile`: `id` (the subject), `name`, `primary_email`, `login_id`,
//!   `sis_user_id`;
//! - `GET /api/v1/courses?include[]=term&enrollment_state=…`: one membership per enrollment, with
//!   the course's real name (`original_name` when the person set a nickname), code, SIS id,
//!   term, enrollment type, role and state. One list per configured `enrollment_state`;
//! - `GET /api/v1/users/self/groups`: the person's groups and the course they belong to.
//!
//! Lists are read to the end through Canvas's opaque `Link` headers (`per_page=100`, which Canvas
//! may lower). Throttling (`403 Forbidden (Rate Limit Exceeded)`) is waited out briefly and then
//! reported, never turned into a shorter list. If the developer key enforces scopes, give
//! `url:GET|/api/v1/users/:user_id/profile`, `url:GET|/api/v1/courses` and
//! `url:GET|/api/v1/users/:user_id/groups` in `scope`.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::github::http_for;
use super::http::{Answer, Auth, ClientAuthMethod, ClientCredentials, UpstreamHttp};
use super::oauth2::{parse_url, resolve_secret, OAuthClient};
use super::{
    claim_string, same_account, ConnectorError, LoginAttempt, Membership, RedirectConnector, UpstreamLogin,
    UpstreamTokens,
};
use crate::clock::UnixTime;
use crate::config::SecretSource;
use crate::store::UpstreamIdentity;

const USERNAME_CLAIMS: [&str; 4] = ["login_id", "primary_email", "sis_user_id", "id"];
const ENROLLMENT_STATES: [&str; 3] = ["active", "invited_or_pending", "completed"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanvasConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    pub client_id: String,
    pub client_secret: SecretSource,
    /// The Canvas site, e.g. `https://canvas.example.edu`.
    pub canvas_url: String,
    /// Canvas API scopes; needed only when the developer key enforces scopes.
    #[serde(default)]
    pub scope: Vec<String>,
    /// `login_id` (default), `primary_email`, `sis_user_id` or `id`, from the profile.
    #[serde(default = "default_username_claim", alias = "username_key")]
    pub username_claim: String,
    /// Which enrollments to read: `active` (default), `invited_or_pending`, `completed`.
    #[serde(default = "default_enrollment_state")]
    pub enrollment_state: Vec<String>,
    /// Per-request timeout for Canvas (humantime, e.g. `"10s"`); default 15s.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

fn default_username_claim() -> String {
    "login_id".into()
}
fn default_enrollment_state() -> Vec<String> {
    vec!["active".into()]
}

pub struct CanvasConnector {
    id: String,
    oauth: OAuthClient,
    /// The site root, without a trailing slash.
    base: String,
    username_claim: String,
    enrollment_states: Vec<String>,
}

impl CanvasConnector {
    pub fn new(cfg: &CanvasConfig, http: &UpstreamHttp) -> Result<Self, (&'static str, String)> {
        let secret = resolve_secret("client_secret", &cfg.client_secret)?;
        let canvas_url = parse_url("canvas_url", &cfg.canvas_url)?;
        if canvas_url.query().is_some() || canvas_url.fragment().is_some() {
            return Err(("canvas_url", "must not have a query or fragment".into()));
        }
        let base = canvas_url.as_str().trim_end_matches('/').to_string();
        if !USERNAME_CLAIMS.contains(&cfg.username_claim.as_str()) {
            return Err(("username_claim", format!("must be one of {}", USERNAME_CLAIMS.join(", "))));
        }
        if cfg.enrollment_state.is_empty() {
            return Err(("enrollment_state", format!("list one or more of {}", ENROLLMENT_STATES.join(", "))));
        }
        let mut enrollment_states: Vec<String> = Vec::new();
        for s in &cfg.enrollment_state {
            if !ENROLLMENT_STATES.contains(&s.as_str()) {
                return Err(("enrollment_state", format!("{s:?} is not one of {}", ENROLLMENT_STATES.join(", "))));
            }
            if !enrollment_states.contains(s) {
                enrollment_states.push(s.clone());
            }
        }
        Ok(Self {
            id: cfg.id.clone(),
            oauth: OAuthClient {
                http: http_for(http, cfg.timeout)?,
                credentials: ClientCredentials { id: cfg.client_id.clone(), secret, method: ClientAuthMethod::Post },
                authorize_url: parse_url("canvas_url", &format!("{base}/login/oauth2/auth"))?,
                token_url: format!("{base}/login/oauth2/token"),
                scope: cfg.scope.clone(),
                extra_authorize_params: Default::default(),
                pkce: true,
            },
            base,
            username_claim: cfg.username_claim.clone(),
            enrollment_states,
        })
    }

    fn http(&self) -> &UpstreamHttp {
        &self.oauth.http
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&format!("{}{path}", self.base)).expect("the base URL was checked");
        url.query_pairs_mut().extend_pairs(query);
        url.to_string()
    }

    async fn profile(&self, token: &str) -> Result<Value, ConnectorError> {
        let url = self.url("/api/v1/users/self/profile", &[]);
        let answer = self.http().get_accepting(&url, Auth::Bearer(token), &[], &[StatusCode::UNAUTHORIZED]).await?;
        if !answer.status.is_success() {
            return Err(token_refused(&answer));
        }
        answer.json("Canvas profile")
    }

    async fn list(&self, url: &str, token: &str) -> Result<Vec<Value>, ConnectorError> {
        match self.http().get_all_pages_accepting(url, Auth::Bearer(token), &[], &[StatusCode::UNAUTHORIZED]).await? {
            Ok(items) => Ok(items),
            Err(answer) => Err(token_refused(&answer)),
        }
    }

    /// Courses for every configured enrollment state (with the state they were listed under):
    /// the lists are independent, so they are read at once (each one's pages in turn).
    async fn courses(&self, token: &str) -> Result<Vec<(&str, Value)>, ConnectorError> {
        let lists = futures_util::future::try_join_all(self.enrollment_states.iter().map(|state| async move {
            let url = self.url(
                "/api/v1/courses",
                &[("per_page", "100"), ("include[]", "term"), ("enrollment_state", state.as_str())],
            );
            let courses = self.list(&url, token).await?;
            Ok::<_, ConnectorError>(courses.into_iter().map(|c| (state.as_str(), c)).collect::<Vec<_>>())
        }))
        .await?;
        Ok(lists.into_iter().flatten().collect())
    }

    async fn groups(&self, token: &str) -> Result<Vec<Value>, ConnectorError> {
        let url = self.url("/api/v1/users/self/groups", &[("per_page", "100")]);
        self.list(&url, token).await
    }

    async fn read(&self, tokens: UpstreamTokens) -> Result<UpstreamLogin, ConnectorError> {
        let token = tokens.access_token.expose();
        let (profile, courses, groups) =
            tokio::try_join!(self.profile(token), self.courses(token), self.groups(token))?;
        let subject =
            claim_string(&profile, "id").ok_or_else(|| ConnectorError::failed("the Canvas profile has no id"))?;
        let username = claim_string(&profile, &self.username_claim).ok_or_else(|| {
            ConnectorError::failed(format!(
                "the Canvas profile has no `{}` to use as the username (does the developer key's account let users see it?)",
                self.username_claim
            ))
        })?;

        let mut memberships = Vec::new();
        for (listed_as, course) in &courses {
            let id = id_of(course).ok_or_else(|| ConnectorError::failed("Canvas listed a course without an id"))?;
            let Some(enrollments) = course.get("enrollments").and_then(Value::as_array) else {
                // `{"id": …, "access_restricted_by_date": true}`: only inactive enrollments, no details.
                tracing::debug!(course = id, "Canvas course without enrollments (access restricted by date)");
                continue;
            };
            let name = course
                .get("original_name")
                .and_then(Value::as_str)
                .or_else(|| course.get("name").and_then(Value::as_str))
                .unwrap_or_default()
                .to_string();
            let term = course.get("term");
            for e in enrollments {
                let enrollment_type = e.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
                let role = e.get("role").and_then(Value::as_str).unwrap_or_default().to_string();
                // `enrollment_state` is the enrollment's workflow state, which stays `active` after
                // the term ended or before it starts; the list it came from says which it is.
                let enrollment_state = match e.get("enrollment_state").and_then(Value::as_str).unwrap_or_default() {
                    "active" if *listed_as != "active" => listed_as.to_string(),
                    other => other.to_string(),
                };
                let m = Membership::CanvasCourse {
                    id,
                    name: name.clone(),
                    course_code: course.get("course_code").and_then(Value::as_str).unwrap_or_default().to_string(),
                    sis_course_id: course.get("sis_course_id").and_then(Value::as_str).map(str::to_string),
                    term: term.and_then(|t| t.get("name")).and_then(Value::as_str).map(str::to_string),
                    term_id: term.and_then(id_of),
                    enrollment_type,
                    role,
                    enrollment_state,
                };
                // The same enrollment can come back under two configured states' lists.
                if !memberships.contains(&m) {
                    memberships.push(m);
                }
            }
        }
        for g in &groups {
            let id = id_of(g).ok_or_else(|| ConnectorError::failed("Canvas listed a group without an id"))?;
            let course_id = match g.get("context_type").and_then(Value::as_str) {
                Some("Course") | None => g.get("course_id").and_then(as_id),
                Some(_) => None,
            };
            memberships.push(Membership::CanvasGroup {
                id,
                name: g.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                course_id,
            });
        }

        let mut groups_out: Vec<String> = Vec::new();
        for m in &memberships {
            let g = match m {
                Membership::CanvasCourse { id, enrollment_state, .. } if enrollment_state == "active" => {
                    format!("course:{id}")
                }
                Membership::CanvasGroup { id, .. } => format!("canvas-group:{id}"),
                _ => continue,
            };
            if !groups_out.contains(&g) {
                groups_out.push(g);
            }
        }
        Ok(UpstreamLogin {
            identity: UpstreamIdentity {
                connector_id: self.id.clone(),
                subject,
                username,
                name: claim_string(&profile, "name"),
                email: claim_string(&profile, "primary_email"),
                // Canvas does not say whether the address was confirmed.
                email_verified: false,
                groups: groups_out,
            },
            memberships,
            tokens,
        })
    }
}

/// Canvas ids are numbers (strings with `Accept: application/json+canvas-string-ids`).
fn as_id(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn id_of(v: &Value) -> Option<u64> {
    v.get("id").and_then(as_id)
}

fn token_refused(answer: &Answer) -> ConnectorError {
    ConnectorError::SessionEnded(format!("Canvas no longer accepts this sign-in's token ({})", answer.status))
}

#[async_trait]
impl RedirectConnector for CanvasConnector {
    async fn authorization_url(&self, attempt: &LoginAttempt) -> Result<String, ConnectorError> {
        Ok(self.oauth.authorization_url(attempt, &[]))
    }

    async fn complete(
        &self,
        attempt: &LoginAttempt,
        code: &str,
        now: UnixTime,
    ) -> Result<UpstreamLogin, ConnectorError> {
        let tokens = self.oauth.exchange_code(attempt, code, now).await?;
        self.read(tokens).await
    }

    async fn refresh(
        &self,
        tokens: &UpstreamTokens,
        subject: &str,
        now: UnixTime,
    ) -> Result<UpstreamLogin, ConnectorError> {
        let fresh = self.oauth.refresh(tokens, now).await?;
        same_account(self.read(fresh).await?, subject)
    }
}
