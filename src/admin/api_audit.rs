//! `GET /admin/api/audit?kind=&actor=&username=&since=&until=&before=&limit=`: the audit log,
//! newest first, for admins and viewers (and read tokens). Filters match exactly; `since` and
//! `until` are Unix seconds or RFC 3339 times (a date alone: its start for `since`, its end for
//! `until`); paging is by id: pass the answer's `next_before` as `before` for the next page.
//! `limit` is at most 500 (50 by default).

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::principal;
use crate::app::SharedState;
use crate::clock::UnixTime;
use crate::console::form::Fields;
use crate::store::{AuditQuery, AuditRecord, AUDIT_PAGE_MAX};

/// An audit event as the API (and the console) shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: i64,
    #[schema(value_type = i64)]
    pub at: UnixTime,
    pub kind: String,
    pub actor: Option<String>,
    pub username: Option<String>,
    pub user_id: Option<String>,
    pub connector_id: Option<String>,
    pub client_id: Option<String>,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

/// One page of the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<EventView>,
    /// The `before` of the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

pub fn view(r: AuditRecord) -> EventView {
    let e = r.event;
    EventView {
        id: r.id,
        at: e.at,
        kind: e.kind,
        actor: e.actor,
        username: e.username,
        user_id: e.user_id,
        connector_id: e.connector_id,
        client_id: e.client_id,
        reason: e.reason,
        request_id: e.request_id,
        detail: e.detail,
    }
}

/// A time filter: Unix seconds, an RFC 3339 time (`2026-12-02T13:00:00Z`, or with a space and
/// no zone, read as UTC) or a date (`2026-12-02`: its first second, or its last when `end`).
pub fn parse_time(name: &str, text: &str, end: bool) -> Result<UnixTime, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<UnixTime>() {
        return Ok(n);
    }
    let is_date = text.len() == 10 && text.as_bytes().get(4) == Some(&b'-');
    // Minutes without seconds (`2026-12-02 13:00`) are common enough to take.
    let no_seconds = text.len() == 16 && text.as_bytes().get(13) == Some(&b':');
    let full = if is_date {
        format!("{text}T00:00:00Z")
    } else if no_seconds {
        format!("{text}:00")
    } else {
        text.to_owned()
    };
    let at = humantime::parse_rfc3339_weak(&full)
        .or_else(|_| humantime::parse_rfc3339(&full))
        .map_err(|_| format!("{name}: {text:?} is not a time like 2026-12-02, 2026-12-02 13:00 or Unix seconds"))?;
    let secs = at.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{name}: {text:?} is before 1970"))?;
    Ok(secs.as_secs() as UnixTime + if is_date && end { 86_399 } else { 0 })
}

/// The audit query these fields ask for (filters, cursor, limit), or what is wrong with them.
pub fn query(f: &Fields, default_limit: u32) -> Result<AuditQuery, String> {
    let text = |n: &str| -> Result<Option<String>, String> {
        match f.get(n) {
            Some(v) if v.len() > 320 || v.chars().any(char::is_control) => {
                Err(format!("{n}: at most 320 printable characters"))
            }
            v => Ok(v.map(str::to_owned)),
        }
    };
    let since = f.get("since").map(|t| parse_time("since", t, false)).transpose()?;
    let until = f.get("until").map(|t| parse_time("until", t, true)).transpose()?;
    let before = match f.get("before") {
        None => None,
        Some(b) => Some(b.parse::<i64>().map_err(|_| format!("before: {b:?} is not an event id"))?),
    };
    let limit = match f.get("limit") {
        None => default_limit,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=AUDIT_PAGE_MAX).contains(&n) => n,
            _ => return Err(format!("limit: {l:?} is not a number from 1 to {AUDIT_PAGE_MAX}")),
        },
    };
    Ok(AuditQuery {
        kind: text("kind")?,
        actor: text("actor")?,
        username: text("username")?,
        since,
        until,
        before,
        limit,
    })
}

/// Reads one page: asks the store for one more than the limit, to know whether an older page
/// exists.
pub async fn page(store: &dyn crate::store::Store, q: &AuditQuery) -> crate::store::StoreResult<AuditPage> {
    let limit = q.bounded_limit();
    let mut ask = q.clone();
    ask.limit = limit + 1;
    let mut rows = store.audit_page(&ask).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_before = if more { rows.last().map(|r| r.id) } else { None };
    Ok(AuditPage { events: rows.into_iter().map(view).collect(), next_before })
}

/// The query parameters of `GET /admin/api/audit` (for the OpenAPI document; the handler reads
/// them with [`query`]).
#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only events of this kind (`login`, `access_allowed`, …).
    kind: Option<String>,
    /// Only changes by this actor (a username, `token:ID`, `cli:USER`, `config-token`).
    actor: Option<String>,
    /// Only events about this username.
    username: Option<String>,
    /// From this time: Unix seconds, `2026-12-02`, `2026-12-02 13:00` or RFC 3339.
    since: Option<String>,
    /// Until this time (a date alone: its end).
    until: Option<String>,
    /// Older than this event id (the previous page's `next_before`).
    before: Option<i64>,
    /// At most this many events (1–500; default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// `GET /admin/api/audit`
#[utoipa::path(
    get,
    path = "/admin/api/audit",
    tag = "audit",
    summary = "The audit log, newest first, filtered and paged",
    params(AuditParams),
    responses(
        (status = 200, description = "One page of events", body = AuditPage),
        (status = 400, description = "A bad filter", body = super::api::ErrorBody),
        (status = 401, description = "No valid admin token or session", body = super::api::ErrorBody),
        (status = 403, description = "Signed in, but not an admin", body = super::api::ErrorBody),
        (status = 503, description = "Storage is unavailable", body = super::api::ErrorBody)
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_audit(State(state): State<SharedState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    if let Err(r) = principal::for_api(&state, &headers, false).await {
        return r.api_response();
    }
    let query = match query(&Fields::query(q.as_deref()), crate::store::AUDIT_PAGE_DEFAULT) {
        Ok(q) => q,
        Err(m) => return (StatusCode::BAD_REQUEST, Json(json!({ "error": m }))).into_response(),
    };
    match page(state.store.as_ref(), &query).await {
        Ok(p) => ([(header::CACHE_CONTROL, "no-store")], Json(p)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not read the audit log");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "storage is unavailable; try again" })))
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_unix_seconds_rfc3339_or_dates() {
        assert_eq!(parse_time("since", "1764633600", false), Ok(1_764_633_600));
        assert_eq!(parse_time("since", "2025-12-02", false), Ok(1_764_633_600));
        assert_eq!(parse_time("until", "2025-12-02", true), Ok(1_764_633_600 + 86_399));
        assert_eq!(parse_time("since", "2025-12-02T01:00:00Z", false), Ok(1_764_637_200));
        assert_eq!(parse_time("since", "2025-12-02 01:00:00", false), Ok(1_764_637_200));
        assert_eq!(parse_time("since", "2025-12-02 01:00", false), Ok(1_764_637_200));
        assert!(parse_time("since", "yesterday", false).unwrap_err().contains("since"));
    }
}
