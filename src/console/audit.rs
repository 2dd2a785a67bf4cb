//! `/admin/audit`: the audit log, newest first, filtered by kind, actor, username and time, paged
//! by id (the same reading as `GET /admin/api/audit`).

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::form::{self, Fields};
use super::{gate, page};
use crate::admin::api_audit;
use crate::app::SharedState;
use crate::web::pages::PageError;

#[derive(Serialize)]
struct Row {
    id: i64,
    at: String,
    kind: String,
    actor: Option<String>,
    username: Option<String>,
    connector: Option<String>,
    client: Option<String>,
    reason: Option<String>,
    request_id: Option<String>,
    detail: Option<String>,
}

const PAGE: u32 = 50;

/// `GET /admin/audit`
pub async fn list(State(state): State<SharedState>, jar: CookieJar, uri: Uri, RawQuery(q): RawQuery) -> Response {
    let who = match gate::require(&state, &jar, &uri, false).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let f = Fields::query(q.as_deref());
    let filters = minijinja::context! {
        kind => f.text("kind"), actor => f.text("actor"), username => f.text("username"),
        since => f.text("since"), until => f.text("until"),
    };
    let base = page::path(&state, "audit");
    // A link to this view with other paging: the filters as they are, and `before` if given.
    let link = |before: Option<i64>| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for name in ["kind", "actor", "username", "since", "until"] {
            if let Some(v) = f.get(name) {
                q.append_pair(name, v);
            }
        }
        if let Some(b) = before {
            q.append_pair("before", &b.to_string());
        }
        format!("{base}?{}", q.finish())
    };
    let (status, error, rows, older) = match api_audit::query(&f, PAGE) {
        Err(m) => (StatusCode::BAD_REQUEST, Some(m), Vec::new(), None),
        Ok(query) => match api_audit::page(state.store.as_ref(), &query).await {
            Err(e) => {
                tracing::error!(error = %e, "could not read the audit log");
                return PageError::internal().into_response();
            }
            Ok(p) => {
                let older = p.next_before.map(|before| link(Some(before)));
                let rows = p
                    .events
                    .into_iter()
                    .map(|e| Row {
                        id: e.id,
                        at: form::time(e.at),
                        kind: e.kind,
                        actor: e.actor,
                        username: e.username,
                        connector: e.connector_id,
                        client: e.client_id,
                        reason: e.reason,
                        request_id: e.request_id,
                        detail: e.detail,
                    })
                    .collect();
                (StatusCode::OK, None, rows, older)
            }
        },
    };
    let ctx = minijinja::context! {
        events => rows,
        filters => filters,
        paged => f.get("before").is_some(),
        newest => f.get("before").is_some().then(|| link(None)),
        older => older,
        action => base,
        error => error,
    };
    page::render(&state, &who, status, "audit", "console/audit.html", ctx)
}
