//! `/admin/report`: the activity report as a table (with the storage columns when Prometheus
//! answers, and the report's notes), and `/admin/report.csv`, the same report to download.

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::form::{self, Fields};
use super::{gate, page};
use crate::admin::report::{self, Format};
use crate::app::SharedState;
use crate::clock::UnixTime;
use crate::web::pages::PageError;

#[derive(Serialize)]
struct Row {
    username: String,
    connectors: Vec<String>,
    groups: Vec<String>,
    created: String,
    last_login: String,
    last_token_use: String,
    last_active: String,
    hub_session_live: bool,
    sso_session_live: bool,
    blocked: String,
    home_directory: Option<String>,
    home_size: String,
    home_last_change: String,
}

/// `1.5 GiB`, for people (the CSV keeps bytes).
fn size(b: Option<f64>) -> String {
    let Some(mut b) = b else { return String::new() };
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if b < 1024.0 || unit == "TiB" {
            return if unit == "B" { format!("{b:.0} B") } else { format!("{b:.1} {unit}") };
        }
        b /= 1024.0;
    }
    unreachable!()
}

fn inactive_since(f: &Fields) -> Result<Option<UnixTime>, String> {
    f.get("inactive_since").map(report::parse_age).transpose().map_err(|m| format!("Inactive since: {m}"))
}

/// `GET /admin/report?inactive_since=90d`
pub async fn show(State(state): State<SharedState>, jar: CookieJar, uri: Uri, RawQuery(q): RawQuery) -> Response {
    let who = match gate::require(&state, &jar, &uri, false).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let f = Fields::query(q.as_deref());
    let base = page::path(&state, "report");
    let csv = match f.get("inactive_since") {
        Some(age) => format!(
            "{base}.csv?{}",
            url::form_urlencoded::Serializer::new(String::new()).append_pair("inactive_since", age).finish()
        ),
        None => format!("{base}.csv"),
    };
    let age = match inactive_since(&f) {
        Ok(a) => a,
        Err(m) => {
            let ctx = minijinja::context! { error => m, inactive_since => f.text("inactive_since"), action => base, csv => csv };
            return page::render(&state, &who, StatusCode::BAD_REQUEST, "report", "console/report.html", ctx);
        }
    };
    let r = match report::build(state.store.as_ref(), &state.config.report, state.clock.now(), age).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "could not build the activity report");
            return PageError::internal().into_response();
        }
    };
    let rows: Vec<Row> = r
        .users
        .iter()
        .map(|u| Row {
            username: u.username.clone(),
            connectors: u.connectors.clone(),
            groups: u.groups.clone(),
            created: form::time(u.created_at),
            last_login: form::time_opt(u.last_login_at),
            last_token_use: form::time_opt(u.last_token_use_at),
            last_active: form::time(u.last_active_at),
            hub_session_live: u.hub_session_live,
            sso_session_live: u.sso_session_live,
            blocked: form::time_opt(u.blocked_at),
            home_directory: u.home_directory.clone(),
            home_size: size(u.home_size_bytes),
            home_last_change: form::time_opt(u.home_last_change_at.filter(|t| *t >= 0.0).map(|t| t as UnixTime)),
        })
        .collect();
    let ctx = minijinja::context! {
        users => rows,
        storage => r.storage,
        notes => r.notes,
        generated => form::time(r.generated_at),
        inactive_since => f.text("inactive_since"),
        action => base,
        csv => csv,
    };
    page::render(&state, &who, StatusCode::OK, "report", "console/report.html", ctx)
}

/// `GET /admin/report.csv?inactive_since=90d`
pub async fn csv(State(state): State<SharedState>, jar: CookieJar, uri: Uri, RawQuery(q): RawQuery) -> Response {
    if let Err(r) = gate::require(&state, &jar, &uri, false).await {
        return r;
    }
    let age = match inactive_since(&Fields::query(q.as_deref())) {
        Ok(a) => a,
        Err(m) => {
            return PageError::new(StatusCode::BAD_REQUEST, "bad_filter", "This report cannot be made", m)
                .into_response()
        }
    };
    match report::build(state.store.as_ref(), &state.config.report, state.clock.now(), age).await {
        Ok(r) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"hubauth-activity.csv\""),
            ],
            report::render(&r, Format::Csv),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not build the activity report");
            PageError::internal().into_response()
        }
    }
}
