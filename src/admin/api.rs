//! The admin API under `/admin/api`, for hub admins' scripts: Bearer tokens from `[admin]
//! api_tokens`, compared in constant time. Without configured tokens the API is off (403).
//!
//! - `GET /admin/api/invites` — every invite (never its secret link)
//! - `POST /admin/api/invites` — JSON `{"expires_in": "7d", "max_uses": 40, "groups": [...],
//!   "connector": "github", "note": "..."}` → `{"id", "link", "expires_at"}` (the link is shown once)
//! - `DELETE /admin/api/invites/{id}` — revoke
//! - `GET /admin/api/access` — the runtime allow-list (expired entries included, with `state`)
//! - `POST /admin/api/access` — JSON `{"username": "alice"}`, `{"email": "a@example.org"}` or
//!   `{"login": "github:octocat"}`, with optional `"groups": [...]`, `"note"`, `"expires_in":
//!   "30d"` → 201 with the entry (200 when it replaced the entry for the same person)
//! - `DELETE /admin/api/access/{id}` — remove an entry (the person loses access at their next
//!   re-check unless another rule admits them)
//! - `GET /admin/api/report/activity?inactive_since=90d&format=json|csv` — the activity report
//!   (JSON by default; its `notes` say why storage columns are missing, if they are)

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::access::{self, NewEntry};
use super::invites::{self, NewInvite};
use crate::app::SharedState;

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// `None` when the request carries a valid admin token, else the refusal to send.
fn refusal(state: &SharedState, headers: &HeaderMap) -> Option<Response> {
    let tokens = &state.config.admin.api_tokens;
    if tokens.is_empty() {
        return Some(error(StatusCode::FORBIDDEN, "the admin API is off: configure [admin] api_tokens"));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .unwrap_or("");
    // Every configured token is compared, so timing does not tell which one came close.
    let ok = tokens.iter().fold(false, |acc, t| t.matches(presented) | acc);
    if presented.is_empty() || !ok {
        let mut r = error(StatusCode::UNAUTHORIZED, "a valid admin API token is required");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer realm=\"hubauth-admin\"".parse().unwrap());
        return Some(r);
    }
    None
}

pub async fn list_invites(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&state, &headers) {
        return r;
    }
    let now = state.clock.now();
    match state.store.invites().await {
        Ok(all) => Json(all.iter().map(|i| invites::view(i, now)).collect::<Vec<_>>()).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not list invites");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
        }
    }
}

pub async fn create_invite(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refusal(&state, &headers) {
        return r;
    }
    let new: NewInvite = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid invite: {e}")),
    };
    if let Err(m) = invites::validate(&state.config, &new) {
        return error(StatusCode::BAD_REQUEST, &m);
    }
    match invites::create(state.store.as_ref(), &state.config, &new, state.clock.now()).await {
        Ok(created) => {
            tracing::info!(invite = %created.id, "invite created through the admin API");
            (StatusCode::CREATED, Json(created)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "could not create an invite");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
        }
    }
}

pub async fn revoke_invite(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refusal(&state, &headers) {
        return r;
    }
    match state.store.revoke_invite(&id, state.clock.now()).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no open invite with this id"),
        Err(e) => {
            tracing::error!(error = %e, "could not revoke an invite");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
        }
    }
}

/// Who the audit log names for changes through the API: the static tokens carry no name.
const API_ACTOR: &str = "admin-api";

fn storage_unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "could not {what}");
    error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
}

pub async fn list_access(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&state, &headers) {
        return r;
    }
    let now = state.clock.now();
    match state.store.access_entries().await {
        Ok(all) => Json(all.iter().map(|e| access::view(e, now)).collect::<Vec<_>>()).into_response(),
        Err(e) => storage_unavailable("list the allow-list", e),
    }
}

pub async fn allow_access(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refusal(&state, &headers) {
        return r;
    }
    let new: NewEntry = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid allow-list entry: {e}")),
    };
    let now = state.clock.now();
    let entry = match access::entry(&state.config, &new, API_ACTOR, now) {
        Ok(e) => e,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    match access::allow(state.store.as_ref(), &entry, crate::web::request_id::current()).await {
        Ok((stored, replaced)) => {
            tracing::info!(entry = %stored.id, replaced, "allow-list entry stored through the admin API");
            let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
            (status, Json(access::view(&stored, now))).into_response()
        }
        Err(e) => storage_unavailable("store an allow-list entry", e),
    }
}

pub async fn deny_access(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refusal(&state, &headers) {
        return r;
    }
    let now = state.clock.now();
    match access::deny(state.store.as_ref(), &id, API_ACTOR, now, crate::web::request_id::current()).await {
        Ok(Some(removed)) => {
            tracing::info!(entry = %removed.id, "allow-list entry removed through the admin API");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no allow-list entry with this id"),
        Err(e) => storage_unavailable("remove an allow-list entry", e),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct ActivityQuery {
    inactive_since: Option<String>,
    format: Option<String>,
}

pub async fn activity_report(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(q): Query<ActivityQuery>,
) -> Response {
    use super::report::{self, Format};
    if let Some(r) = refusal(&state, &headers) {
        return r;
    }
    let inactive_since = match q.inactive_since.as_deref().map(report::parse_age).transpose() {
        Ok(age) => age,
        Err(m) => return error(StatusCode::BAD_REQUEST, &format!("inactive_since: {m}")),
    };
    let format = match q.format.as_deref().unwrap_or("json") {
        "json" => Format::Json,
        "csv" => Format::Csv,
        other => return error(StatusCode::BAD_REQUEST, &format!("format: {other:?} is not json or csv")),
    };
    match report::build(state.store.as_ref(), &state.config.report, state.clock.now(), inactive_since).await {
        Ok(r) => {
            let content_type = if format == Format::Csv { "text/csv; charset=utf-8" } else { "application/json" };
            ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-store")], report::render(&r, format))
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "could not build the activity report");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
        }
    }
}
