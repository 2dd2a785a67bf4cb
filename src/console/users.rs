//! The console's Users section: find people, see everything about one, block, unblock, revoke
//! their sessions or delete them, one at a time or in bulk (through a confirmation page that
//! lists exactly who is affected). The work is in [`crate::admin::users`], shared with the API.

use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::Serialize;

use super::{gate, page};
use crate::admin::principal::Principal;
use crate::admin::users::{self, Change, Error, Filter, Selection};
use crate::admin::Actor;
use crate::app::SharedState;
use crate::clock::UnixTime;
use crate::web::pages::{no_store, PageError};

/// A form's or query's fields, in order (repeated names kept).
fn fields(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn filter_of(f: &[(String, String)]) -> Filter {
    let get = |n: &str| field(f, n).map(str::to_owned).filter(|v| !v.trim().is_empty());
    Filter {
        q: get("q"),
        group: get("group"),
        connector: get("connector"),
        active_since: get("active_since"),
        inactive_since: get("inactive_since"),
        blocked: get("blocked"),
    }
}

/// The filter as a query string (for the next-page link and hidden fields).
fn filter_query(filter: &Filter) -> Vec<(&'static str, String)> {
    [
        ("q", &filter.q),
        ("group", &filter.group),
        ("connector", &filter.connector),
        ("active_since", &filter.active_since),
        ("inactive_since", &filter.inactive_since),
        ("blocked", &filter.blocked),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect()
}

pub fn time(t: Option<UnixTime>) -> String {
    match t.and_then(|t| u64::try_from(t).ok()) {
        Some(t) => humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t))
            .to_string()
            .replace('T', " ")
            .replace('Z', " UTC"),
        None => "never".into(),
    }
}

fn error_page(e: Error) -> Response {
    match e {
        Error::BadInput(m) => PageError::new(StatusCode::BAD_REQUEST, "bad_request", "This request cannot be used", m)
            .with_hint("Go back, correct it and try again.")
            .into_response(),
        Error::NotFound(name) => PageError::new(
            StatusCode::NOT_FOUND,
            "no_such_user",
            "No such user",
            format!("There is no hubauth user {name:?} (deleted, or never signed in)."),
        )
        .into_response(),
        Error::Store(e) => {
            tracing::error!(error = %e, "console users: storage failed");
            PageError::internal().into_response()
        }
    }
}

fn see_other(to: String) -> Response {
    (StatusCode::SEE_OTHER, no_store(), [(header::LOCATION, to)]).into_response()
}

#[derive(Serialize)]
struct Row {
    username: String,
    href: String,
    name: String,
    email: String,
    groups: Vec<String>,
    connectors: Vec<String>,
    last_login: String,
    last_token_use: String,
    blocked: bool,
}

/// `GET /admin/users?q=&group=&connector=&active_since=&inactive_since=&blocked=&after=`
pub async fn list(State(state): State<SharedState>, jar: CookieJar, uri: Uri, RawQuery(raw): RawQuery) -> Response {
    let who = match gate::require(&state, &jar, &uri, false).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let f = fields(raw.unwrap_or_default().as_bytes());
    let filter = filter_of(&f);
    let after = field(&f, "after").map(str::to_owned);
    let now = state.clock.now();
    let result = users::list(state.store.as_ref(), &filter, after.as_deref(), None, now).await;
    let page = match result {
        Ok(p) => p,
        Err(Error::BadInput(m)) => {
            return render_list(&state, &who, StatusCode::BAD_REQUEST, &filter, None, Some(m), field(&f, "done"))
        }
        Err(e) => return error_page(e),
    };
    render_list(&state, &who, StatusCode::OK, &filter, Some((page, after)), None, field(&f, "done"))
}

fn done_notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "deleted" => "The user is deleted: their sessions and tokens are revoked and their account is gone.",
        _ => return None,
    })
}

fn render_list(
    state: &SharedState,
    who: &Principal,
    status: StatusCode,
    filter: &Filter,
    page: Option<(users::Page, Option<String>)>,
    error: Option<String>,
    done: Option<&str>,
) -> Response {
    let base = page::path(state, "users");
    let (rows, next, total, paged) = match page {
        Some((p, after)) => {
            let rows: Vec<Row> = p
                .users
                .into_iter()
                .map(|u| Row {
                    href: format!("{base}/{}", encode(&u.username)),
                    username: u.username,
                    name: u.name.unwrap_or_default(),
                    email: u.email.unwrap_or_default(),
                    groups: u.groups,
                    connectors: u.connectors,
                    last_login: time(u.last_login_at),
                    last_token_use: time(u.last_token_use_at),
                    blocked: u.blocked,
                })
                .collect();
            let next = p.next.map(|n| {
                let mut q = filter_query(filter);
                q.push(("after", n));
                format!("{base}?{}", encode_pairs(&q))
            });
            (rows, next, p.total, after.is_some())
        }
        None => (Vec::new(), None, 0, false),
    };
    let first = format!("{base}?{}", encode_pairs(&filter_query(filter)));
    let hidden: Vec<(&str, String)> = filter_query(filter);
    let ctx = minijinja::context! {
        filter => filter,
        rows => rows,
        next => next,
        first => paged.then_some(first),
        total => total,
        filtered => !filter.is_empty(),
        hidden => hidden,
        base => base,
        error => error,
        notice => done_notice(done),
        bulk_max => users::BULK_MAX,
    };
    page::render(state, who, status, "users", "console/users.html", ctx)
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

fn encode_pairs(pairs: &[(&str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs.iter().map(|(k, v)| (*k, v))).finish()
}

#[derive(Debug, serde::Deserialize)]
pub struct DetailQuery {
    done: Option<String>,
}

/// `GET /admin/users/{username}`
pub async fn show(
    State(state): State<SharedState>,
    jar: CookieJar,
    uri: Uri,
    Path(username): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Response {
    let who = match gate::require(&state, &jar, &uri, false).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let d = match users::detail(state.store.as_ref(), &username, state.clock.now()).await {
        Ok(d) => d,
        Err(e) => return error_page(e),
    };
    let notice = q.done.as_deref().and_then(|d| match d {
        "blocked" => {
            Some("Blocked: their sessions and tokens are revoked and they cannot sign in again until unblocked.")
        }
        "already_blocked" => Some("They were blocked already; their sessions and tokens are revoked again."),
        "unblocked" => Some("Unblocked: they can sign in again."),
        "not_blocked" => Some("They were not blocked."),
        "sessions_revoked" => Some("Their sessions and tokens are revoked: they must sign in again."),
        _ => None,
    });
    let sessions: Vec<_> = d
        .sessions
        .iter()
        .map(|s| {
            minijinja::context! {
                kind => if s.kind == "browser" { "hubauth sign-in" } else { "hub grant" },
                via => s.connector.clone().or(s.client_id.clone()).unwrap_or_default(),
                created => time(Some(s.created_at)),
                expires => s.expires_at.map(|t| time(Some(t))).unwrap_or_else(|| "with its tokens".into()),
            }
        })
        .collect();
    let audit: Vec<_> = d
        .audit
        .iter()
        .map(|e| {
            minijinja::context! {
                at => time(Some(e.at)), kind => e.kind, reason => e.reason, actor => e.actor,
                detail => e.detail, request_id => e.request_id,
            }
        })
        .collect();
    let identities: Vec<_> = d
        .identities
        .iter()
        .map(|i| {
            minijinja::context! {
                connector => i.connector, subject => i.subject, upstream_username => i.upstream_username,
                memberships => serde_json::to_string_pretty(&i.memberships).unwrap_or_default(),
                refreshed => time(i.refreshed_at),
            }
        })
        .collect();
    let base = format!("{}/{}", page::path(&state, "users"), encode(&d.user.username));
    let ctx = minijinja::context! {
        user => &d.user,
        base => base,
        list => page::path(&state, "users"),
        created => time(Some(d.user.created_at)),
        last_login => time(d.user.last_login_at),
        last_token_use => time(d.user.last_token_use_at),
        blocked_at => time(d.user.blocked_at),
        admitted_by => d.admitted_by,
        admitted_at => time(d.admitted_at),
        identities => identities,
        sessions => sessions,
        audit => audit,
        notice => notice,
    };
    page::render(&state, &who, StatusCode::OK, "users", "console/user.html", ctx)
}

/// `POST /admin/users/{username}/{block|unblock|revoke|delete}` (field `csrf`; delete asks to
/// confirm first, then comes with `confirm=yes`).
pub async fn act(
    State(state): State<SharedState>,
    jar: CookieJar,
    uri: Uri,
    Path((username, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let who = match gate::require(&state, &jar, &uri, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let f = fields(&body);
    if !gate::csrf_ok(&who, field(&f, "csrf")) {
        return gate::csrf_refused();
    }
    let change = match Change::parse(&action) {
        Ok(c) => c,
        Err(e) => return error_page(e),
    };
    let store = state.store.as_ref();
    if change == Change::Delete && field(&f, "confirm") != Some("yes") {
        // The same confirmation as a bulk delete, for one person.
        return match store.user_by_username(&username).await {
            Ok(Some(_)) => confirm_page(&state, &who, change, vec![username], None),
            Ok(None) => error_page(Error::NotFound(username)),
            Err(e) => error_page(e.into()),
        };
    }
    let outcome = users::apply(store, &username, change, &Actor::of(&who), state.clock.now()).await;
    let base = page::path(&state, "users");
    match outcome.outcome.as_str() {
        "not_found" => error_page(Error::NotFound(username)),
        "skipped" => error_page(Error::BadInput(outcome.error.unwrap_or_default())),
        "failed" => {
            tracing::error!(error = ?outcome.error, user = %username, "console: a change failed");
            PageError::internal().into_response()
        }
        "deleted" => see_other(format!("{base}?done=deleted")),
        done => see_other(format!("{base}/{}?done={done}", encode(&username))),
    }
}

fn confirm_page(
    state: &SharedState,
    who: &Principal,
    change: Change,
    names: Vec<String>,
    filter: Option<&Filter>,
) -> Response {
    let (verb, explain) = match change {
        Change::Block => ("Block", "Their sessions and tokens are revoked and they cannot sign in until unblocked."),
        Change::Unblock => ("Unblock", "They can sign in again."),
        Change::Revoke => ("Revoke the sessions of", "Their sessions and tokens are revoked; they can sign in again."),
        Change::Delete => (
            "Delete",
            "Their sessions and tokens are revoked and their accounts deleted, with their identities. \
             This cannot be undone; the audit log keeps their names.",
        ),
    };
    let ctx = minijinja::context! {
        action => change.as_str(),
        verb => verb,
        explain => explain,
        count => names.len(),
        names_field => names.join(" "),
        names => names,
        filtered => filter.is_some_and(|f| !f.is_empty()),
        apply => format!("{}/bulk/apply", page::path(state, "users")),
        list => page::path(state, "users"),
    };
    page::render(state, who, StatusCode::OK, "users", "console/users_confirm.html", ctx)
}

/// `POST /admin/users/bulk`: `action` (revoke, block, unblock, delete) and either the checked
/// `user` boxes or `scope=all` with the filter's fields → the confirmation page.
pub async fn bulk(State(state): State<SharedState>, jar: CookieJar, uri: Uri, body: Bytes) -> Response {
    let who = match gate::require(&state, &jar, &uri, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let f = fields(&body);
    if !gate::csrf_ok(&who, field(&f, "csrf")) {
        return gate::csrf_refused();
    }
    let change = match Change::parse(field(&f, "action").unwrap_or_default()) {
        Ok(c) => c,
        Err(e) => return error_page(e),
    };
    let filter = filter_of(&f);
    let selection = if field(&f, "scope") == Some("all") {
        Selection::Matching(filter.clone())
    } else {
        Selection::Usernames(f.iter().filter(|(k, _)| k == "user").map(|(_, v)| v.clone()).collect())
    };
    match users::resolve(state.store.as_ref(), &selection, state.clock.now()).await {
        Ok(names) => confirm_page(&state, &who, change, names, Some(&filter)),
        Err(e) => error_page(e),
    }
}

/// `POST /admin/users/bulk/apply`: the confirmed `names` (space-separated) and `action` → the
/// per-person outcomes.
pub async fn bulk_apply(State(state): State<SharedState>, jar: CookieJar, uri: Uri, body: Bytes) -> Response {
    let who = match gate::require(&state, &jar, &uri, true).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let f = fields(&body);
    if !gate::csrf_ok(&who, field(&f, "csrf")) {
        return gate::csrf_refused();
    }
    let change = match Change::parse(field(&f, "action").unwrap_or_default()) {
        Ok(c) => c,
        Err(e) => return error_page(e),
    };
    let names: Vec<String> = field(&f, "names").unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    let names = match users::resolve(state.store.as_ref(), &Selection::Usernames(names), state.clock.now()).await {
        Ok(n) => n,
        Err(e) => return error_page(e),
    };
    let outcomes = users::bulk(state.store.as_ref(), &names, change, &Actor::of(&who), || state.clock.now()).await;
    let failed = outcomes.iter().filter(|o| o.failed()).count();
    let base = page::path(&state, "users");
    let rows: Vec<_> = outcomes
        .iter()
        .map(|o| {
            minijinja::context! {
                username => o.username,
                href => (o.outcome != "deleted" && o.outcome != "not_found").then(|| format!("{base}/{}", encode(&o.username))),
                outcome => o.outcome.replace('_', " "),
                failed => o.failed(),
                revoked_grants => o.revoked_grants,
                error => o.error,
            }
        })
        .collect();
    let ctx = minijinja::context! {
        action => change.as_str(),
        rows => rows,
        count => outcomes.len(),
        failed => failed,
        list => base,
    };
    page::render(&state, &who, StatusCode::OK, "users", "console/users_result.html", ctx)
}
