//! Text from upstreams and from the callback's query (`error`, `error_description`, error bodies
//! of token endpoints and APIs) reaches the logs escaped, quoted and bounded: a newline in it
//! cannot start a line of its own that reads like one hubauth wrote.

use axum::http::StatusCode;
use serde_json::json;

use crate::fakes::Fault;
use crate::harness::*;
use crate::no_secrets_in_logs::capture;
use crate::upstream_github::{app_for, login, octocat};
use crate::upstream_oidc::{alice, setup, upstream_login, FakeOidc, Twist};

/// A log line as hubauth's text format writes it, for the person reading the logs to believe.
fn forged(marker: &str) -> String {
    format!("2026-12-01T22:00:00.000000Z  INFO hubauth::web::login: user logged in user=admin {marker}")
}

/// Every captured line that mentions `marker`; none may start with the forged text.
fn lines_with(marker: &str) -> Vec<String> {
    let logs = String::from_utf8(capture().0.lock().unwrap().clone()).unwrap();
    logs.lines().filter(|l| l.contains(marker)).map(str::to_string).collect()
}

fn assert_not_forged(marker: &str) {
    let lines = lines_with(marker);
    assert!(!lines.is_empty(), "the upstream text ({marker}) was logged at all");
    for line in &lines {
        assert!(!line.starts_with("2026-12-01T22:00:00"), "a forged log line: {line}");
        assert!(line.len() < 2000, "bounded: {} bytes", line.len());
    }
}

async fn callback_with(app: &TestApp, pairs: &[(&str, &str)]) -> TestResponse {
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let up = browser.start_upstream(&AuthParams::hub(&pkce), "uni").await;
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let mut all = pairs.to_vec();
    all.push(("state", &state));
    browser.upstream_callback("uni", &all).await
}

#[tokio::test]
async fn an_error_description_in_the_callback_cannot_forge_a_log_line() {
    capture();
    let (app, _fake) = setup("").await;
    let description = format!("End-User aborted\n{}\r\n{}", forged("marker-cb-1"), "x".repeat(5000));
    let res = callback_with(&app, &[("error", "access_denied"), ("error_description", &description)]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_not_forged("marker-cb-1");

    // `error` is cut shorter than a whole forged line: a short one.
    let error = "server_error\n2026-12-01T22:00:00Z INFO marker-cb-2";
    let res = callback_with(&app, &[("error", error)]).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert_not_forged("marker-cb-2");
}

#[tokio::test]
async fn a_token_endpoints_error_description_cannot_forge_a_log_line() {
    capture();
    let (app, fake): (TestApp, FakeOidc) = setup("").await;
    fake.set_token_error(
        json!({"error": "invalid_request", "error_description": format!("bad\n{}", forged("marker-tok"))}),
    );
    let (res, _) = upstream_login(&app, &fake, alice(), Twist::default()).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.text());
    assert_not_forged("marker-tok");
}

#[tokio::test]
async fn an_api_error_message_cannot_forge_a_log_line() {
    capture();
    let fake = crate::fakes::github::GithubFake::start().await;
    fake.add_user(octocat());
    fake.api_fault(
        "/user",
        None,
        Fault::Status(500, json!({"message": format!("oops\n{}", forged("marker-api"))})),
        None,
    );
    let app = app_for(&fake, "").await;
    let res = login(&app, &fake, "octocat").await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.text());
    assert_not_forged("marker-api");
}

#[tokio::test]
async fn a_url_in_the_discovery_document_cannot_forge_a_log_line() {
    capture();
    let (app, fake) = setup("").await;
    // A valid URL once parsed (parsing drops line breaks), on plain http: hubauth warns about it.
    fake.set_discovery_field("authorization_endpoint", "http://idp.example/\n2026-12-01T22:00:00Z INFO marker-disc");
    let pkce = Pkce::new();
    app.browser().start_upstream(&AuthParams::hub(&pkce), "uni").await;
    assert_not_forged("marker-disc");
}
