//! The admin API's users endpoints (see [`super::users`]):
//!
//! - `GET /admin/api/users?q=&group=&connector=&active_since=30d&inactive_since=90d&blocked=yes|no&after=&limit=`
//!   → `{"users": [...], "next": "username" | null, "total": n}`
//! - `GET /admin/api/users/{username}` → identities, memberships, why admitted, sessions, audit trail
//! - `POST /admin/api/users/{username}/block`, `/unblock`, `/revoke-sessions` → the outcome
//! - `DELETE /admin/api/users/{username}` → the outcome
//! - `POST /admin/api/users/bulk` `{"action": "revoke|block|unblock|delete", "usernames": [...]}` or
//!   `{"action": ..., "filter": {"inactive_since": "90d", ...}}` → `{"outcomes": [...]}`

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::principal::{self, Principal};
use super::users::{self, Change, Error, Filter, Selection};
use super::Actor;
use crate::app::SharedState;

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn failure(e: Error) -> Response {
    match e {
        Error::BadInput(m) => error(StatusCode::BAD_REQUEST, &m),
        Error::NotFound(_) => error(StatusCode::NOT_FOUND, &e.to_string()),
        Error::Store(e) => {
            tracing::error!(error = %e, "users API: storage failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
        }
    }
}

async fn allowed(state: &SharedState, headers: &HeaderMap, write: bool) -> Result<Principal, Response> {
    principal::for_api(state, headers, write).await.map_err(|r| r.api_response())
}

/// What a bulk change did, person by person.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BulkResult {
    pub action: String,
    pub outcomes: Vec<users::Outcome>,
}

/// The query parameters of `GET /admin/api/users`, for the OpenAPI document.
#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Case-insensitive part of a username, name or e-mail address.
    q: Option<String>,
    group: Option<String>,
    connector: Option<String>,
    /// Signed in or used a token within this long, e.g. `30d`.
    active_since: Option<String>,
    /// Neither for this long (or never), e.g. `90d`.
    inactive_since: Option<String>,
    /// `yes`, `no` or `any`.
    #[param(pattern = "^(yes|no|true|false|any)$")]
    blocked: Option<String>,
    /// The previous page's `next`.
    after: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// `GET /admin/api/users` query.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    #[serde(flatten)]
    filter: ListFilter,
    after: Option<String>,
    limit: Option<String>,
}

/// The filter's fields as query parameters (flattening with `deny_unknown_fields` is not possible).
#[derive(Debug, Default, serde::Deserialize)]
struct ListFilter {
    q: Option<String>,
    group: Option<String>,
    connector: Option<String>,
    active_since: Option<String>,
    inactive_since: Option<String>,
    blocked: Option<String>,
}

impl From<ListFilter> for Filter {
    fn from(f: ListFilter) -> Self {
        Filter {
            q: f.q,
            group: f.group,
            connector: f.connector,
            active_since: f.active_since,
            inactive_since: f.inactive_since,
            blocked: f.blocked,
        }
    }
}

#[utoipa::path(
    get,
    path = "/admin/api/users",
    tag = "users",
    summary = "People, filtered, one page by username",
    params(ListParams),
    responses(
        (status = 200, description = "One page", body = users::Page),
        (status = 400, description = "A bad filter", body = super::api::ErrorBody),
        (status = 401, description = "No valid admin token or session", body = super::api::ErrorBody),
        (status = 403, description = "Signed in, but not an admin", body = super::api::ErrorBody),
        (status = 503, description = "Storage is unavailable", body = super::api::ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list(
    State(state): State<SharedState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = allowed(&state, &headers, false).await {
        return r;
    }
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let limit = match q.limit.as_deref().map(str::trim).filter(|l| !l.is_empty()).map(str::parse::<u32>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "limit: not a number"),
    };
    let filter = Filter::from(q.filter);
    match users::list(state.store.as_ref(), &filter, q.after.as_deref(), limit, state.clock.now()).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => failure(e),
    }
}

#[utoipa::path(
    get,
    path = "/admin/api/users/{username}",
    tag = "users",
    summary = "One person: identities, memberships, why admitted, sessions, audit trail",
    params(("username" = String, Path, description = "The hub username")),
    responses(
        (status = 200, description = "The person", body = users::Detail),
        (status = 404, description = "No such user", body = super::api::ErrorBody),
        (status = 401, description = "No valid admin token or session", body = super::api::ErrorBody),
        (status = 403, description = "Signed in, but not an admin", body = super::api::ErrorBody),
        (status = 503, description = "Storage is unavailable", body = super::api::ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn show(State(state): State<SharedState>, headers: HeaderMap, Path(username): Path<String>) -> Response {
    if let Err(r) = allowed(&state, &headers, false).await {
        return r;
    }
    match users::detail(state.store.as_ref(), &username, state.clock.now()).await {
        Ok(d) => Json(d).into_response(),
        Err(e) => failure(e),
    }
}

async fn change(state: &SharedState, headers: &HeaderMap, username: &str, change: Change) -> Response {
    let who = match allowed(state, headers, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let outcome = users::apply(state.store.as_ref(), username, change, &Actor::of(&who), state.clock.now()).await;
    let status = match outcome.outcome.as_str() {
        "not_found" => StatusCode::NOT_FOUND,
        "skipped" => StatusCode::CONFLICT,
        "failed" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    (status, Json(outcome)).into_response()
}

#[utoipa::path(
    post,
    path = "/admin/api/users/{username}/block",
    tag = "users",
    summary = "Block: revoke every token and session, refuse sign-ins",
    params(("username" = String, Path, description = "The hub username")),
    responses(
        (status = 200, description = "What was done", body = users::Outcome),
        (status = 404, description = "No such user", body = users::Outcome),
        (status = 409, description = "Skipped (e.g. an admin changing themselves)", body = users::Outcome),
        (status = 401, description = "No valid admin token or session (or no CSRF token with a session)", body = super::api::ErrorBody),
        (status = 403, description = "Not an admin, or a read-only credential", body = super::api::ErrorBody),
        (status = 503, description = "Storage is unavailable", body = super::api::ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn block(State(state): State<SharedState>, headers: HeaderMap, Path(username): Path<String>) -> Response {
    change(&state, &headers, &username, Change::Block).await
}

#[utoipa::path(
    post,
    path = "/admin/api/users/{username}/unblock",
    tag = "users",
    summary = "Unblock",
    params(("username" = String, Path, description = "The hub username")),
    responses(
        (status = 200, description = "What was done", body = users::Outcome),
        (status = 404, description = "No such user", body = users::Outcome),
        (status = 409, description = "Skipped (e.g. an admin changing themselves)", body = users::Outcome),
        (status = 401, description = "No valid admin token or session (or no CSRF token with a session)", body = super::api::ErrorBody),
        (status = 403, description = "Not an admin, or a read-only credential", body = super::api::ErrorBody),
        (status = 503, description = "Storage is unavailable", body = super::api::ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn unblock(State(state): State<SharedState>, headers: HeaderMap, Path(username): Path<String>) -> Response {
    change(&state, &headers, &username, Change::Unblock).await
}

#[utoipa::path(
    post,
    path = "/admin/api/users/{username}/revoke-sessions",
    tag = "users",
    summary = "Revoke every session and token (they sign in again)",
    params(("username" = String, Path, description = "The hub username")),
    responses(
        (status = 200, description = "What was done", body = users::Outcome),
        (status = 404, description = "No such user", body = users::Outcome),
        (status = 409, description = "Skipped (e.g. an admin changing themselves)", body = users::Outcome),
        (status = 401, description = "No valid admin token or session (or no CSRF token with a session)", body = super::api::ErrorBody),
        (status = 403, description = "Not an admin, or a read-only credential", body = super::api::ErrorBody),
        (status = 503, description = "Storage is unavailable", body = super::api::ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn revoke_sessions(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Response {
    change(&state, &headers, &username, Change::Revoke).await
}

#[utoipa::path(
    delete,
    path = "/admin/api/users/{username}",
    tag = "users",
    summary = "Delete the person and everything of theirs",
    params(("username" = String, Path, description = "The hub username")),
    responses(
        (status = 200, description = "What was done", body = users::Outcome),
        (status = 404, description = "No such user", body = users::Outcome),
        (status = 409, description = "Skipped (e.g. an admin changing themselves)", body = users::Outcome),
        (status = 401, description = "No valid admin token or session (or no CSRF token with a session)", body = super::api::ErrorBody),
        (status = 403, description = "Not an admin, or a read-only credential", body = super::api::ErrorBody),
        (status = 503, description = "Storage is unavailable", body = super::api::ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn delete(State(state): State<SharedState>, headers: HeaderMap, Path(username): Path<String>) -> Response {
    change(&state, &headers, &username, Change::Delete).await
}

/// `POST /admin/api/users/bulk` body: `usernames` or `filter`, not both.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// `revoke`, `block`, `unblock` or `delete`.
    #[schema(pattern = "^(revoke|block|unblock|delete)$")]
    pub action: String,
    pub usernames: Option<Vec<String>>,
    pub filter: Option<Filter>,
}

#[utoipa::path(
    post,
    path = "/admin/api/users/bulk",
    tag = "users",
    summary = "Revoke, block, unblock or delete many people",
    request_body(content = BulkRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One outcome per person", body = BulkResult),
        (status = 400, description = "The request says what is wrong", body = super::api::ErrorBody),
        (status = 401, description = "No valid admin token or session (or no CSRF token with a session)", body = super::api::ErrorBody),
        (status = 403, description = "Not an admin, or a read-only credential", body = super::api::ErrorBody),
        (status = 503, description = "Storage is unavailable", body = super::api::ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn bulk(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let who = match allowed(&state, &headers, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let req: BulkRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid bulk request: {e}")),
    };
    let change = match Change::parse(&req.action) {
        Ok(c) => c,
        Err(e) => return failure(e),
    };
    let selection = match (req.usernames, req.filter) {
        (Some(names), None) => Selection::Usernames(names),
        (None, Some(filter)) => Selection::Matching(filter),
        _ => return error(StatusCode::BAD_REQUEST, "give either usernames or filter"),
    };
    let store = state.store.as_ref();
    let names = match users::resolve(store, &selection, state.clock.now()).await {
        Ok(n) => n,
        Err(e) => return failure(e),
    };
    let outcomes = users::bulk(store, &names, change, &Actor::of(&who), || state.clock.now()).await;
    Json(BulkResult { action: change.as_str().to_owned(), outcomes }).into_response()
}
