//! The activity report (`GET /admin/api/report/activity`, `hubauth report activity`): sign-ins
//! and token use per user, the inactive filter, its formats, and the storage columns from a
//! Prometheus that scrapes prometheus-dirsize-exporter (a fake here, answering like
//! `/api/v1/query` does) or none when Prometheus is not there.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::Query;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::harness::*;

pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef0123456789";

pub fn admin_toml(extra: &str) -> String {
    format!("[admin]\napi_tokens = [\"{ADMIN_TOKEN}\"]\n{extra}")
}

async fn report(app: &TestApp, query: &str) -> TestResponse {
    let req = Request::get(format!("/admin/api/report/activity{query}"))
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    app.send(req).await
}

fn user<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["users"].as_array().unwrap().iter().find(|u| u["username"] == name).unwrap_or(&Value::Null)
}

fn names(report: &Value) -> Vec<String> {
    report["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect()
}

/// The report once the background write of a token use has landed (it is off the request path).
async fn report_when(app: &TestApp, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let r = report(app, "").await.json();
        if done(&r) {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the report never got there: {}", report(app, "").await.text());
}

#[tokio::test]
async fn the_report_follows_sign_ins_and_token_use_and_filters_the_inactive() {
    let app = TestApp::with_extra_toml(&admin_toml("")).await;
    let ada = app.login_and_exchange("ada", "ada-pw").await;
    let r = report(&app, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let r = r.json();
    assert_eq!(user(&r, "ada")["last_login_at"], START);
    assert_eq!(user(&r, "ada")["created_at"], START);
    assert_eq!(user(&r, "ada")["last_token_use_at"], Value::Null, "a code exchange is a sign-in, not a use");
    assert_eq!(user(&r, "ada")["connectors"], json!(["dev"]));
    assert_eq!(user(&r, "ada")["groups"], json!(["admins"]));
    assert_eq!(user(&r, "ada")["hub_session_live"], true);
    assert_eq!(user(&r, "ada")["sso_session_live"], true);
    assert_eq!(r["storage"], false, "no Prometheus configured");
    assert!(user(&r, "ada").get("home_size_bytes").is_none());

    app.clock.advance(120);
    let refreshed =
        app.token(&[("grant_type", "refresh_token"), ("refresh_token", ada["refresh_token"].as_str().unwrap())]).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    let r = report_when(&app, |r| user(r, "ada")["last_token_use_at"] == START + 120).await;
    assert_eq!(user(&r, "ada")["last_login_at"], START, "a refresh is no sign-in");

    // A userinfo call a minute later moves it again; one within the minute does not write.
    app.clock.advance(30);
    let access = refreshed.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.userinfo(&access).await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(user(&report(&app, "").await.json(), "ada")["last_token_use_at"], START + 120);
    app.clock.advance(31);
    assert_eq!(app.userinfo(&access).await.status, StatusCode::OK);
    report_when(&app, |r| user(r, "ada")["last_token_use_at"] == START + 181).await;

    // 100 days on, sam signs in: only ada is inactive for 90 days.
    app.clock.advance(100 * 86400);
    app.login_and_exchange("sam", "sam-pw").await;
    let r = report(&app, "?inactive_since=90d").await.json();
    assert_eq!(names(&r), ["ada"]);
    assert_eq!(r["inactive_since_seconds"], 90 * 86400);
    assert_eq!(user(&r, "ada")["hub_session_live"], false, "her tokens expired meanwhile");
    assert_eq!(names(&report(&app, "?inactive_since=101d").await.json()), Vec::<String>::new());
    assert_eq!(names(&report(&app, "").await.json()), ["ada", "sam"]);

    let bad = report(&app, "?inactive_since=soon").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error"].as_str().unwrap().contains("inactive_since"));
    assert_eq!(report(&app, "?format=xml").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_report_needs_an_admin_token() {
    let app = TestApp::with_extra_toml(&admin_toml("")).await;
    let anonymous = app.send(Request::get("/admin/api/report/activity").body(Body::empty()).unwrap()).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let wrong = app
        .send(
            Request::get("/admin/api/report/activity")
                .header(header::AUTHORIZATION, "Bearer admin-token-0123456789abcdef012345678X")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn csv_has_a_header_and_one_parsable_line_per_user() {
    let app = TestApp::with_extra_toml(&admin_toml("")).await;
    app.login_and_exchange("ada", "ada-pw").await;
    app.login_and_exchange("sam", "sam-pw").await;
    let r = report(&app, "?format=csv").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    let text = r.text();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(lines[0][0], "username");
    assert!(!lines[0].contains(&"home_size_bytes"));
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
    let col = |name: &str| lines[0].iter().position(|h| *h == name).unwrap();
    assert_eq!(lines[1][col("username")], "ada");
    assert_eq!(lines[1][col("groups")], "admins");
    // RFC 3339, UTC.
    assert_eq!(lines[1][col("last_login_at")], "2027-01-15T08:00:00Z");
    assert_eq!(lines[2][col("last_token_use_at")], "");
}

/// What prometheus-dirsize-exporter's series look like through `/api/v1/query`: one instant
/// vector per metric, `directory` the home directory's name, values as strings.
pub(crate) fn fake_prometheus(sizes: &[(&str, &str)], mtimes: &[(&str, &str)]) -> Router {
    let series = |name: &str, values: &[(&str, &str)]| -> Vec<Value> {
        values
            .iter()
            .map(|(dir, v)| {
                json!({
                    "metric": {"__name__": name, "directory": dir, "instance": "10.0.0.7:8000", "job": "dirsize"},
                    "value": [1800000000.456, v],
                })
            })
            .collect()
    };
    let sizes = series("dirsize_total_size_bytes", sizes);
    let mtimes = series("dirsize_latest_mtime", mtimes);
    Router::new().route(
        "/api/v1/query",
        get(move |Query(q): Query<HashMap<String, String>>| {
            let (sizes, mtimes) = (sizes.clone(), mtimes.clone());
            async move {
                let result = match q.get("query").map(String::as_str) {
                    Some("dirsize_total_size_bytes") => sizes,
                    Some("dirsize_latest_mtime") => mtimes,
                    Some(_) => Vec::new(), // an unknown metric: an empty vector, as Prometheus says
                    None => {
                        return (
                            StatusCode::BAD_REQUEST,
                            Json(json!({"status": "error", "errorType": "bad_data", "error": "parse error: no query"})),
                        )
                    }
                };
                (StatusCode::OK, Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}})))
            }
        }),
    )
}

#[tokio::test]
async fn storage_columns_come_from_prometheus_by_home_directory() {
    let prometheus = crate::fakes::serve(fake_prometheus(
        &[("ada", "123456789"), ("someone-else", "5"), ("sam", "NaN")],
        &[("ada", "1799990000.5"), ("sam", "1700000000")],
    ))
    .await;
    let app = TestApp::with_extra_toml(&admin_toml(&format!("[report]\nprometheus_url = \"{prometheus}\"\n"))).await;
    app.login_and_exchange("ada", "ada-pw").await;
    app.login_and_exchange("sam", "sam-pw").await;
    let r = report(&app, "").await.json();
    assert_eq!(r["storage"], true, "{r}");
    assert_eq!(user(&r, "ada")["home_directory"], "ada");
    assert_eq!(user(&r, "ada")["home_size_bytes"], 123456789.0);
    assert_eq!(user(&r, "ada")["home_last_change_at"], 1799990000.5);
    assert!(user(&r, "sam").get("home_size_bytes").is_none(), "NaN is no size");
    assert_eq!(user(&r, "sam")["home_last_change_at"], 1700000000.0);
    assert_eq!(r["notes"], json!([]));

    let csv = report(&app, "?format=csv").await.text();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let ada: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert_eq!(ada[col("home_size_bytes")], "123456789");
    assert_eq!(ada[col("home_last_change_at")], "2027-01-15T05:13:20Z");
}

#[tokio::test]
async fn an_unreachable_prometheus_leaves_a_note_and_no_storage_columns() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = TestApp::with_extra_toml(&admin_toml(&format!(
        "[report]\nprometheus_url = \"http://{closed}\"\nprometheus_timeout = \"2s\"\n"
    )))
    .await;
    app.login_and_exchange("ada", "ada-pw").await;
    let r = report(&app, "").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = r.json();
    assert_eq!(r["storage"], false);
    assert!(user(&r, "ada").get("home_size_bytes").is_none());
    let notes = r["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1);
    assert!(notes[0].as_str().unwrap().contains("cannot connect"), "{notes:?}");
}

/// The same from the command line, on the same database: CSV and JSON parse, and without
/// Prometheus the note goes to stderr and the command still succeeds.
#[tokio::test]
async fn the_cli_prints_the_report_in_each_format() {
    let app = TestApp::with_extra_toml("").await;
    app.login_and_exchange("ada", "ada-pw").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hubauth.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[report]\nprometheus_url = \"http://{closed}\"\nprometheus_timeout = \"2s\"\n",
            config_toml_with_url(&app.state.config.storage.url)
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    let run = move |format: &'static str| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            crate::cli::hubauth(&["report", "activity", "--config", &config, "--format", format])
        })
    };
    let (ok, csv, stderr) = run("csv").await.unwrap();
    assert!(ok, "{stderr}");
    assert!(stderr.contains("note: no storage columns") && stderr.contains("cannot connect"), "{stderr}");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[..3], ["username", "connectors", "groups"]);
    assert!(!header.contains(&"home_size_bytes"));
    assert_eq!(lines.next().unwrap().split(',').next(), Some("ada"));

    let (ok, out, stderr) = run("json").await.unwrap();
    assert!(ok, "{stderr}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(names(&r), ["ada"]);
    assert!(r["notes"][0].as_str().unwrap().contains("cannot connect"));

    let (ok, table, _) = run("table").await.unwrap();
    assert!(ok);
    assert!(table.starts_with("USERNAME") && table.contains("\nada "), "{table}");
    let (ok, _, stderr) = run("xml").await.unwrap();
    assert!(!ok && stderr.contains("use table, csv or json"), "{stderr}");
}
